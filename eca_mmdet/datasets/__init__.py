"""Dataset utilities (import-light: numpy, Pillow and pycocotools only)."""
from .shapes import CATEGORIES, CLASSES, make_shapes_dataset

__all__ = ["CATEGORIES", "CLASSES", "make_shapes_dataset"]
