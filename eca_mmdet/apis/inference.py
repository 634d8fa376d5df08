"""Build or load a detector and run it on images: the Python API.

::

    from eca_mmdet.apis import load_detector, predict
    model = load_detector('configs/shapes/mask_rcnn_ecaresnet18_shapes.py',
                          'work_dirs/shapes_quickstart/epoch_12.pth')
    results = predict(model, ['a.png', 'b.png'])  # DetDataSample per image

:func:`load_detector` is mmdet's :func:`~mmdet.apis.init_detector` plus what
it lacks: weights-only loading (our allow-list, whether or not the stack
fixes are on), a strict fit check (a checkpoint of another model is refused
naming the first mismatched keys, where mmengine would leave those weights
random) and one-line errors. The demo, ``tools/visualize.py``,
``tools/progress_gif.py``, ``tools/benchmark.py`` and
``tools/model_stats.py`` all load models through it.
"""

import warnings
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmdet.apis import inference_detector, init_detector
from mmengine.config import Config

from ..engine.checkpoint import load_fitting_checkpoint
from .common import load_config

__all__ = ['load_detector', 'load_weights', 'predict']


def load_weights(model: torch.nn.Module, checkpoint: str) -> dict:
    """Load ``checkpoint`` into ``model`` (weights-only, strict), refusing
    one that does not fit (:class:`CheckpointMismatchError` naming the first
    mismatched keys). Returns the checkpoint dict."""
    return load_fitting_checkpoint(
        model, checkpoint, "the config's model", load=True
    ).checkpoint


def checkpoint_dataset_meta(ckpt: dict) -> Optional[dict]:
    """``dataset_meta`` saved by mmengine in ``ckpt['meta']`` (keys
    lower-cased, like ``init_detector``), or None."""
    meta = (ckpt.get('meta') or {}).get('dataset_meta')
    return {k.lower(): v for k, v in meta.items()} if meta else None


def _config_dataset_meta(cfg: Config) -> dict:
    from mmdet.registry import DATASETS

    for key in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        loader = cfg.get(key)
        if not loader or 'dataset' not in loader:
            continue
        ds_cfg = loader['dataset'].copy()
        ds_cfg['lazy_init'] = True
        try:
            return dict(DATASETS.build(ds_cfg).metainfo)
        except Exception:  # noqa: BLE001 - wrappers without lazy_init
            continue
    return {}


def load_detector(
    config: Union[str, Config],
    checkpoint: Optional[str] = None,
    device: str = 'cpu',
    cfg_options: Optional[dict] = None,
) -> torch.nn.Module:
    """The detector of ``config`` (a path or a Config) in eval mode on
    ``device``, with ``model.cfg`` and ``model.dataset_meta``.

    Built by mmdet's ``init_detector`` (the backbone's pretrained
    ``init_cfg`` is dropped); with ``checkpoint`` its weights are loaded by
    :func:`load_weights` (weights-only, strict). ``dataset_meta`` comes from
    the checkpoint's meta when present, else from the config's dataset (not
    COCO's classes, which ``init_detector`` assumes without a checkpoint).
    Without ``checkpoint`` the weights are random.
    """
    if isinstance(config, Config):
        cfg = config.copy()
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
    else:
        cfg = load_config(str(config), cfg_options)
    backbone = cfg.model.get('backbone')
    if backbone is not None and 'init_cfg' in backbone:
        backbone.init_cfg = None  # weights come from the checkpoint
    with warnings.catch_warnings(record=True) as caught:
        model = init_detector(cfg, None, palette='random', device='cpu')
    for w in caught:  # but 'checkpoint is None, use COCO classes': see below
        if 'COCO classes' not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    model.dataset_meta = _config_dataset_meta(cfg)
    if checkpoint is not None:
        meta = checkpoint_dataset_meta(load_weights(model, checkpoint))
        if meta:
            model.dataset_meta = meta
    return model.to(device).eval()


def predict(
    model: torch.nn.Module, images: Sequence[Union[str, np.ndarray]]
) -> List:
    """Run ``model`` (from :func:`load_detector`) on image paths or RGB
    arrays; one ``DetDataSample`` per image, in the image's own frame."""
    arrays = [
        img[..., ::-1].copy() if isinstance(img, np.ndarray) else img
        for img in images
    ]  # mmdet's ndarray loader expects BGR
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            results = inference_detector(model, list(arrays))
    finally:
        model.train(was_training)
    return results
