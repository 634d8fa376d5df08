"""Dataset utilities: the synthetic shapes set, COCO annotation checks and
image loading that skips (training) or names (evaluation) unreadable files."""

from .coco_check import AnnotationError, CocoFileReport, check_coco_file
from .shapes import CATEGORIES, CLASSES, make_shapes_dataset
from .transforms import (
    ImageReadError,
    SafeLoadImageFromFile,
    guard_image_loading,
)

__all__ = [
    'AnnotationError',
    'CATEGORIES',
    'CLASSES',
    'CocoFileReport',
    'ImageReadError',
    'SafeLoadImageFromFile',
    'check_coco_file',
    'guard_image_loading',
    'make_shapes_dataset',
]
