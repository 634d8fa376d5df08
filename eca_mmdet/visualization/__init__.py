"""Rendering of detections: :class:`StableColorDetVisualizer` (mmdet's
``DetLocalVisualizer`` with stable class colours, see :mod:`.visualizer`),
image files and contact sheets (:mod:`.render`), training-progress GIFs
(:mod:`.progress`) and training curves (:mod:`.curves`).

Importing it registers ``StableColorDetVisualizer`` in mmdet's
``VISUALIZERS``.
"""

from .progress import (
    MAX_INSTANCES,
    compose_frame,
    epoch_checkpoints,
    format_caption,
    frame_files,
    read_val_metrics,
    write_gif,
)
from .render import (
    CONTACT_SHEET,
    IMG_EXTENSIONS,
    VisualizationError,
    check_score_thr,
    make_grid,
    read_image,
    rendering_name,
    save_image,
    write_contact_sheet,
)
from .visualizer import (
    StableColorDetVisualizer,
    class_palette,
    fixed_palette,
    gt_in_image_frame,
    rescale_instances,
    resize_sample,
)

__all__ = [
    'CONTACT_SHEET',
    'IMG_EXTENSIONS',
    'MAX_INSTANCES',
    'StableColorDetVisualizer',
    'VisualizationError',
    'check_score_thr',
    'class_palette',
    'compose_frame',
    'epoch_checkpoints',
    'fixed_palette',
    'format_caption',
    'frame_files',
    'gt_in_image_frame',
    'make_grid',
    'read_image',
    'read_val_metrics',
    'rendering_name',
    'rescale_instances',
    'resize_sample',
    'save_image',
    'write_contact_sheet',
    'write_gif',
]
