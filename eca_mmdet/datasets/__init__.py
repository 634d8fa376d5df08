"""Dataset utilities: the synthetic shapes set, COCO annotation checks."""
from .coco_check import AnnotationError, CocoFileReport, check_coco_file
from .shapes import CATEGORIES, CLASSES, make_shapes_dataset

__all__ = [
    "AnnotationError", "CATEGORIES", "CLASSES", "CocoFileReport",
    "check_coco_file", "make_shapes_dataset"
]
