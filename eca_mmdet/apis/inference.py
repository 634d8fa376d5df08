"""Build or load a detector and run it on images: the Python API.

::

    from eca_mmdet.apis import load_detector, predict
    model = load_detector('configs/shapes/mask_rcnn_ecaresnet18_shapes.py',
                          'work_dirs/shapes_quickstart/epoch_12.pth')
    results = predict(model, ['a.png', 'b.png'])  # DetDataSample per image
    sample = predict(model, mmcv.imread('c.png'))  # a BGR array, like mmdet

:func:`predict` takes what mmdet's :func:`~mmdet.apis.inference_detector`
takes (paths, BGR arrays, one or a list) and also mixed lists, leaves
``model.cfg`` as it is, and names a missing image file.

:func:`load_detector` is mmdet's :func:`~mmdet.apis.init_detector` plus what
it lacks: weights-only loading (our allow-list, whether or not the stack
fixes are on), a strict fit check (a checkpoint of another model is refused
naming the first mismatched keys, where mmengine would leave those weights
random) and one-line errors. The demo, ``tools/visualize.py``,
``tools/progress_gif.py``, ``tools/benchmark.py`` and
``tools/model_stats.py`` all load models through it.
"""

import copy
import os
import os.path as osp
import warnings
from itertools import groupby
from types import SimpleNamespace
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmcv.transforms import Compose
from mmdet.apis import inference_detector, init_detector
from mmdet.structures import DetDataSample
from mmdet.utils import get_test_pipeline_cfg
from mmengine.config import Config

from ..datasets.transforms import ImageReadError, guard_image_loading
from ..engine.checkpoint import load_fitting_checkpoint
from ..engine.errors import EcaMmdetError
from .common import load_config

__all__ = [
    'PredictInputError',
    'load_detector',
    'load_weights',
    'predict',
]


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


class PredictInputError(EcaMmdetError):
    """An input of :func:`predict` that is neither an image path nor an
    image array it can run (wrong type, or an array of another shape)."""


# One input of predict: a path (str or os.PathLike) or a BGR array.
ImageInput = Union[str, 'os.PathLike[str]', np.ndarray]


def predict(
    model: torch.nn.Module,
    images: Union[ImageInput, Sequence[ImageInput]],
) -> Union[DetDataSample, List[DetDataSample]]:
    """Run ``model`` (from :func:`load_detector`) on ``images``; what
    mmdet's :func:`~mmdet.apis.inference_detector` takes, without its
    traps.

    Args:
        model: The detector, with ``model.cfg`` (its test pipeline is
            used; ``model.cfg`` is never changed).
        images: One image or a list/tuple of them, each an image file path
            (``str`` or ``pathlib.Path``) or an image array in **BGR**
            channel order, as ``mmcv.imread`` and ``cv2.imread`` return it
            (and as ``inference_detector`` expects), shape ``(H, W, 3)``.
            A gray array, ``(H, W)`` or ``(H, W, 1)``, is taken as the
            3-channel image with equal channels, as ``mmcv.imread`` reads
            a gray file. Paths and arrays may be mixed in one list.

    Returns:
        One ``DetDataSample`` (predictions in the image's own frame) for a
        single image, a list of them, in input order, for a list.

    Raises:
        ImageReadError: a path that is not a file (checked for every path
            before any image is run) or not a decodable image; the message
            names the path.
        PredictInputError: an input of another type, or an array of
            another shape (e.g. 4 channels: drop the alpha channel and give
            BGR), naming the input's position and shape.
    """
    single = isinstance(images, (str, os.PathLike, np.ndarray))
    items = [images] if single else list(images)
    inputs = [_checked_input(img, i) for i, img in enumerate(items)]
    pipelines = {}  # built from a deep copy of model.cfg: it stays as is
    results: List[DetDataSample] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            # inference_detector takes one kind (paths or arrays) per call
            for is_array, run in groupby(inputs, key=_is_array):
                if is_array not in pipelines:
                    pipelines[is_array] = _test_pipeline(model, is_array)
                results.extend(
                    inference_detector(
                        model, list(run), test_pipeline=pipelines[is_array]
                    )
                )
    finally:
        model.train(was_training)
    return results[0] if single else results


def _is_array(item: Union[str, np.ndarray]) -> bool:
    return isinstance(item, np.ndarray)


def _checked_input(item: ImageInput, index: int) -> Union[str, np.ndarray]:
    """``item`` as inference_detector takes it (a str path or a 3-channel
    array), or the error naming it."""
    if isinstance(item, np.ndarray):
        if item.ndim == 3 and item.shape[-1] == 1:
            item = item[..., 0]
        if item.ndim == 2:  # gray, as mmcv.imread(flag='color') reads it
            item = np.repeat(item[..., None], 3, axis=-1)
        if item.ndim != 3 or item.shape[-1] != 3 or item.size == 0:
            raise PredictInputError(
                f'predict: image {index} is an array of shape '
                f'{tuple(item.shape)}; expected a BGR image (H, W, 3) as '
                'mmcv.imread or cv2.imread returns it (or a gray (H, W))'
            )
        return item
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        if not isinstance(path, str) or not osp.isfile(path):
            reason = 'not a file' if osp.exists(path) else 'file not found'
            raise ImageReadError(f'cannot read image {path}: {reason}')
        return path
    raise PredictInputError(
        f'predict: image {index} is a {type(item).__name__}; expected an '
        'image path or a BGR numpy array'
    )


def _test_pipeline(model: torch.nn.Module, arrays: bool) -> Compose:
    """The test pipeline of ``model.cfg`` (a deep copy: mmdet 3.3.0's
    ``inference_detector`` changes the loader of ``model.cfg`` itself when
    it builds the pipeline for arrays, after which paths fail with
    ``KeyError: 'img'``) with the loader for ``arrays`` or for paths."""
    steps = copy.deepcopy(get_test_pipeline_cfg(model.cfg))
    loader = steps[0]['type']
    if arrays:
        steps[0]['type'] = 'mmdet.LoadImageFromNDArray'
    elif isinstance(loader, str) and loader.endswith('LoadImageFromNDArray'):
        # a cfg changed by inference_detector: its file loader's settings
        steps[0]['type'] = 'LoadImageFromFile'
    pipeline = Compose(steps)
    if not arrays:  # a missing or corrupt file: ImageReadError naming it
        guard_image_loading(SimpleNamespace(pipeline=pipeline), False)
    return pipeline
