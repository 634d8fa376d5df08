"""Rendering of detections: stable class colours, GT | prediction panels,
contact sheets and training-progress GIFs (see :mod:`.render` and
:mod:`.progress`).

Importing it registers ``StableColorDetVisualizer`` in mmdet's
``VISUALIZERS``.
"""
from .progress import (compose_frame, epoch_checkpoints, format_caption,
                       frame_files, read_val_metrics, write_gif)
from .render import (IMG_EXTENSIONS, CheckpointMismatchError, DetRenderer,
                     StableColorDetVisualizer, VisualizationError,
                     build_detector, checkpoint_mismatch, class_palette,
                     fixed_palette, load_config, load_detector, load_weights,
                     make_grid, predict, read_image, render_data_samples,
                     render_sample, rescale_instances, save_image,
                     write_contact_sheet)

__all__ = [
    'IMG_EXTENSIONS', 'CheckpointMismatchError', 'DetRenderer',
    'StableColorDetVisualizer', 'VisualizationError', 'build_detector',
    'checkpoint_mismatch', 'class_palette', 'compose_frame',
    'epoch_checkpoints', 'fixed_palette', 'format_caption', 'frame_files',
    'load_config', 'load_detector', 'load_weights', 'make_grid', 'predict',
    'read_image', 'read_val_metrics', 'render_data_samples', 'render_sample',
    'rescale_instances', 'save_image', 'write_contact_sheet', 'write_gif'
]
