"""The attention explorer behind ``tools/eca_attention.py``: record the ECA
gates of a detector (or of an ECAResNet backbone alone, e.g. converted
ImageNet weights) on images, then write ``gates.npz``, the figures and the
per-stage statistics (:mod:`eca_mmdet.visualization.attention`).

::

    from eca_mmdet.apis.attention import explore_attention
    summary = explore_attention(
        'configs/shapes/mask_rcnn_ecaresnet18_shapes.py',
        'work_dirs/shapes_quickstart/epoch_12.pth',
        ann_file='data/shapes/annotations/instances_val.json',
        out_dir='work_dirs/shapes_quickstart/attention')

An image's classes come from its annotations (``ann_file``), else from the
detector's predictions scoring at least ``score_thr``; the backbone alone
has classes only with ``ann_file``.
"""

import contextlib
import io
import json
import os
import os.path as osp
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.utils import ProgressBar

from ..engine.atomic_io import atomic_writer
from ..engine.checkpoint import (
    load_fitting_checkpoint,
    safe_torch_load,
    state_dict_of,
)
from ..engine.errors import first_line
from ..engine.paths import check_output_location, refuse_overwriting_inputs
from ..models import ECAResNet, eca_layers, record_gates
from ..visualization.attention import (
    AttentionError,
    GateSet,
    barely_moving,
    between_by_chance,
    default_line_blocks,
    no_information,
    out_paths,
    plot_class_lines,
    plot_offset_heatmap,
    plot_stage_histograms,
    save_gates,
    stage_stats,
)
from ..visualization.render import read_image
from .common import load_config
from .inference import load_detector, predict
from .inputs import expand_images

__all__ = [
    'ImageSet',
    'explore_attention',
    'config_img_dir',
    'images_from_coco',
    'load_backbone',
]

# ImageNet normalisation (RGB), as the converted weights were trained with
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass
class ImageSet:
    """Images to explore: paths, ids and, from annotations, classes."""

    files: List[str]
    ids: List[int]
    class_names: Optional[List[str]] = None  # None: from predictions
    classes: Optional[np.ndarray] = None  # images x classes, bool


def images_from_coco(
    ann_file: str,
    img_dir: Optional[str] = None,
    max_images: Optional[int] = None,
    img_dir_from: str = '',
) -> ImageSet:
    """The first ``max_images`` images (by id) of a COCO file with the
    classes of their non-crowd annotations. ``img_dir`` defaults to the
    COCO layout's ``<root>/<split>`` for ``<root>/annotations/
    instances_<split>.json``, else the annotation file's folder
    (:func:`explore_attention` passes the folder its config reads the
    images from, and says where that came from in ``img_dir_from``, for
    the error message)."""
    from pycocotools.coco import COCO

    if not osp.isfile(ann_file):
        raise AttentionError(f'annotation file not found: {ann_file}')
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(ann_file)
    except Exception as e:  # noqa: BLE001 - bad json or layout
        raise AttentionError(
            f'cannot read COCO annotations {ann_file}: '
            f'{type(e).__name__}: {first_line(e)}'
        ) from None
    if img_dir is None:
        img_dir = _default_img_dir(ann_file)
        img_dir_from = img_dir_from or 'next to the annotation file'
    if not osp.isdir(img_dir):
        where = f'{img_dir_from}; ' if img_dir_from else ''
        raise AttentionError(
            f'image folder of {ann_file} not found: {img_dir} '
            f'({where}set --img-dir)'
        )
    cat_ids = sorted(coco.cats)
    column = {cid: i for i, cid in enumerate(cat_ids)}
    ids = sorted(coco.imgs)[:max_images]
    if not ids:
        raise AttentionError(f'{ann_file} lists no images')
    classes = np.zeros((len(ids), len(cat_ids)), bool)
    for row, img_id in enumerate(ids):
        for ann in coco.imgToAnns.get(img_id, []):
            if not ann.get('iscrowd') and ann.get('category_id') in column:
                classes[row, column[ann['category_id']]] = True
    files = [osp.join(img_dir, coco.imgs[i]['file_name']) for i in ids]
    missing = [f for f in files if not osp.isfile(f)]
    if missing:
        raise AttentionError(
            f'{len(missing)} image(s) of {ann_file} not in '
            f'{img_dir}, e.g. {missing[0]} (set --img-dir)'
        )
    return ImageSet(
        files, ids, [coco.cats[c]['name'] for c in cat_ids], classes
    )


def _default_img_dir(ann_file: str) -> str:
    folder = osp.dirname(osp.abspath(ann_file))
    stem = osp.splitext(osp.basename(ann_file))[0]
    if osp.basename(folder) == 'annotations' and stem.startswith('instances_'):
        return osp.join(osp.dirname(folder), stem[len('instances_') :])
    return folder


def _dataset_chain(dataset):
    """``dataset`` and the datasets it wraps (``RepeatDataset``,
    ``ClassBalancedDataset``: ``dataset.dataset``)."""
    while isinstance(dataset, dict):
        yield dataset
        dataset = dataset.get('dataset')


def config_img_dir(
    config: Optional[str], ann_file: str
) -> Optional[Tuple[str, str]]:
    """``(folder, where)``: the folder the config's dataloaders read the
    images of ``ann_file`` from, as mmengine does (``data_root`` joined
    with ``data_prefix['img']`` of the dataset whose ``ann_file``, joined
    with ``data_root``, is ``ann_file``; the val, test, then train
    dataloader), and that dataloader's name; ``None`` when no dataset of
    ``config`` reads ``ann_file``."""
    if config is None or not ann_file:
        return None
    cfg = load_config(config)
    target = osp.realpath(ann_file)
    for key in ('val_dataloader', 'test_dataloader', 'train_dataloader'):
        loader = cfg.get(key) or {}
        for dataset in _dataset_chain(loader.get('dataset')):
            ann = dataset.get('ann_file')
            if not isinstance(ann, str) or not ann:
                continue
            root = dataset.get('data_root') or ''
            if osp.realpath(osp.join(root, ann)) != target:
                continue
            prefix = dict(dataset.get('data_prefix') or {})
            img = prefix.get('img', prefix.get('img_path', '')) or ''
            folder = osp.join(root, img) if root else img
            return folder or '.', (
                f"the config's {key}: data_root + data_prefix.img"
            )
    return None


def _backbone_cfg(config: Optional[str], ckpt: dict) -> dict:
    """The ECAResNet config: the config file's ``model.backbone``, its
    ``model`` (a backbone-only config) or top-level ``backbone``; else the
    converted checkpoint's ``meta['backbone']``."""
    if config is not None:
        cfg = load_config(config)
        model = cfg.get('model') or {}
        for cand in (model.get('backbone'), model, cfg.get('backbone')):
            if cand and cand.get('type') in ('ECAResNet', ECAResNet):
                return dict(cand)
        raise AttentionError(
            f'{config} has no ECAResNet backbone '
            '(model.backbone, model or backbone)'
        )
    meta = (ckpt.get('meta') or {}) if isinstance(ckpt, dict) else {}
    if not isinstance(meta.get('backbone'), dict):
        raise AttentionError(
            'the checkpoint names no backbone (meta["backbone"], written by '
            'tools/convert_weights.py): give a config too'
        )
    return dict(meta['backbone'])


def load_backbone(
    checkpoint: str, config: Optional[str] = None
) -> torch.nn.Module:
    """An ECAResNet with the weights of ``checkpoint`` (converted ImageNet
    weights, or a detector's, whose ``backbone.`` keys are taken), built
    from ``config`` or the checkpoint's meta, in eval mode."""
    from mmdet.registry import MODELS

    ckpt = safe_torch_load(checkpoint, map_location='cpu')
    cfg = _backbone_cfg(config, ckpt)
    cfg.pop('init_cfg', None)
    cfg.pop('pretrained', None)
    try:
        model = MODELS.build(cfg)
    except Exception as e:  # noqa: BLE001 - bad arguments
        raise AttentionError(
            f'cannot build the backbone {cfg}: '
            f'{type(e).__name__}: {first_line(e)}'
        ) from None
    detector = any(k.startswith('backbone.') for k in state_dict_of(ckpt))
    load_fitting_checkpoint(
        model,
        checkpoint,
        'the backbone',
        prefix='backbone.' if detector else None,
        checkpoint=ckpt,
        load=True,
    )
    return model.eval()


def _backbone_input(path: str, size: int) -> torch.Tensor:
    """The image as a (1, 3, H, W) ImageNet-normalised tensor, the shorter
    side resized to ``size``."""
    image = torch.from_numpy(read_image(path)).permute(2, 0, 1).float()
    h, w = image.shape[1:]
    scale = size / min(h, w)
    image = F.interpolate(
        image[None],
        size=(max(1, round(h * scale)), max(1, round(w * scale))),
        mode='bilinear',
        align_corners=False,
    )
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image - mean) / std


def _test_pipeline(model):
    """The config's test pipeline, as mmdet's ``inference_detector`` builds
    it."""
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg

    return Compose(get_test_pipeline_cfg(model.cfg.copy()))


def _detector_input(model, pipeline, path: str) -> torch.Tensor:
    """The batch tensor the detector's backbone sees for the image at
    ``path`` (test pipeline, then the data preprocessor)."""
    read_image(path)  # a clear error for a bad file
    data = pipeline(dict(img_path=path, img_id=0))
    data = dict(inputs=[data['inputs']], data_samples=[data['data_samples']])
    return model.data_preprocessor(data, False)['inputs']


def _is_backbone_config(config: Optional[str]) -> bool:
    if config is None:
        return True
    model = load_config(config).get('model') or {}
    return model.get('type') in ('ECAResNet', ECAResNet)


def _warn_other_classes(
    ann_file: Optional[str],
    ann_classes: Sequence[str],
    model_classes: Sequence[str],
    checkpoint: str,
) -> None:
    """Say so when the classes of ``ann_file`` are not the detector's: the
    figures then group the gates by classes the model was not trained on."""
    if not ann_file or not model_classes:
        return
    other = [c for c in ann_classes if c not in model_classes]
    if not other:
        return
    shown = ', '.join(other[:5]) + (' ...' if len(other) > 5 else '')
    print(
        f'warning: --ann {ann_file} has {len(other)} of {len(ann_classes)} '
        f'classes the detector of {checkpoint} does not know ({shown}; it '
        f'knows {", ".join(list(model_classes)[:5])}'
        f'{" ..." if len(model_classes) > 5 else ""}): the figures group '
        "the gates by the annotation's classes, not by what the detector "
        'was trained on',
        file=sys.stderr,
        flush=True,
    )


def explore_attention(
    config: Optional[str],
    checkpoint: str,
    out_dir: str,
    images: Sequence[str] = (),
    ann_file: Optional[str] = None,
    img_dir: Optional[str] = None,
    max_images: Optional[int] = None,
    backbone_only: bool = False,
    score_thr: float = 0.3,
    blocks: Optional[Sequence[str]] = None,
    img_size: int = 224,
    device: str = 'cpu',
    progress: bool = True,
) -> dict:
    """Record the gate of every ECA block on each image, then write into
    ``out_dir``: ``gates.npz`` (:func:`save_gates`),
    ``class_mean_gates.png`` (mean gate per class of ``blocks``, default the
    last block of each stage), ``class_offsets.png`` (blocks x classes),
    ``stage_histograms.png`` and ``stage_stats.json``.

    ``backbone_only`` (or a config whose model is an ECAResNet, or no
    config) runs the backbone alone on ImageNet-normalised images, the
    shorter side at ``img_size``; otherwise the detector of ``config``.

    Returns:
        ``{'paths': {...}, 'stats': {stage: {mean, std, between,
        between_chance_mean, between_chance_q95, between_chance_p}},
        'images': n, 'classes': [...], 'no_information': why,
        'barely_moving': barely}``: ``why`` the reason the gates carry no
        information (:func:`~eca_mmdet.visualization.attention.
        no_information`, also in the figures' titles), else ``None``;
        ``barely`` says when they do change with the image but all stay
        within 0.001 of 0.5 (:func:`~eca_mmdet.visualization.attention.
        barely_moving`), else ``None``. Both are in ``stage_stats.json``.
    """
    if max_images is not None and max_images < 1:
        raise AttentionError(f'--max-images must be >= 1, got {max_images}')
    if bool(images) == bool(ann_file):
        raise AttentionError('give images or an annotation file (one)')
    if ann_file:
        img_dir_from = ''
        if img_dir is None:
            found = config_img_dir(config, ann_file)
            if found is not None:
                img_dir, img_dir_from = found
        image_set = images_from_coco(
            ann_file, img_dir, max_images, img_dir_from
        )
    else:
        files = expand_images(images)[:max_images]
        image_set = ImageSet(files, list(range(len(files))))
    check_output_location('--out-dir', out_dir, is_dir=True)
    refuse_overwriting_inputs(
        [('--out-dir', p) for p in out_paths(out_dir).values()],
        {
            'image': image_set.files,
            'annotation file': ann_file,
            'checkpoint': checkpoint,
            'config': config,
        },
    )
    backbone_only = backbone_only or _is_backbone_config(config)
    if backbone_only:
        model = load_backbone(checkpoint, config)
        backbone, class_names = model, image_set.class_names or []
    else:
        model = load_detector(config, checkpoint, device=device)
        backbone = getattr(model, 'backbone', model)
        model_classes = list((model.dataset_meta or {}).get('classes') or ())
        class_names = image_set.class_names or model_classes
        _warn_other_classes(ann_file, class_names, model_classes, checkpoint)
    model = model.to(device)
    if not eca_layers(backbone):
        what = 'backbone' if backbone is not model else 'model'
        raise AttentionError(
            f'the {what} ({type(backbone).__name__}) has no ECA layers: '
            'nothing to explore (is it an ECAResNet, or ECALayer plugins?)'
        )
    names = list(eca_layers(backbone))
    unknown = [b for b in blocks or () if b not in names]
    if unknown:
        raise AttentionError(
            f'no such ECA block: {", ".join(unknown)} '
            f'(blocks: {", ".join(names)})'
        )
    gates, predicted = _record(
        model,
        backbone,
        image_set,
        backbone_only,
        score_thr,
        img_size,
        device,
        progress,
    )
    classes = image_set.classes
    if classes is None:  # from predictions
        classes = np.zeros((len(image_set.files), len(class_names)), bool)
        for row, labels in enumerate(predicted):
            classes[row, [lb for lb in labels if lb < len(class_names)]] = True
    gate_set = GateSet(
        names,
        gates,
        np.asarray(image_set.ids),
        list(image_set.files),
        list(class_names),
        classes,
    )
    return write_outputs(gate_set, out_dir, blocks)


def _record(
    model,
    backbone,
    image_set: ImageSet,
    backbone_only: bool,
    score_thr: float,
    img_size: int,
    device: str,
    progress: bool,
) -> Tuple[Dict[str, np.ndarray], List[List[int]]]:
    rows: Dict[str, List[torch.Tensor]] = {}
    predicted: List[List[int]] = []
    pipeline = None if backbone_only else _test_pipeline(model)
    bar = ProgressBar(len(image_set.files)) if progress else None
    with record_gates(backbone) as recorder, torch.no_grad():
        for path in image_set.files:
            if backbone_only:
                backbone(_backbone_input(path, img_size).to(device))
            elif image_set.classes is not None:
                # classes from annotations: the backbone suffices
                backbone(_detector_input(model, pipeline, path))
            else:
                read_image(path)  # a clear error for a bad file
                sample = predict(model, [path])[0]
                inst = sample.pred_instances
                keep = inst.scores >= score_thr
                predicted.append(sorted(set(inst.labels[keep].tolist())))
            for name, gate in recorder.take().items():
                # one row per image: the first forward of the image
                rows.setdefault(name, []).append(gate[:1])
            if bar is not None:
                bar.update()
    if bar is not None:
        print(flush=True)
    return {n: torch.cat(r).numpy() for n, r in rows.items()}, predicted


def write_outputs(
    gate_set: GateSet, out_dir: str, blocks: Optional[Sequence[str]] = None
) -> dict:
    """Write ``gates.npz``, the three figures and ``stage_stats.json`` of
    ``gate_set`` into ``out_dir``; returns what :func:`explore_attention`
    does."""
    os.makedirs(out_dir, exist_ok=True)
    paths = out_paths(out_dir)
    save_gates(paths['gates'], gate_set)
    n = len(gate_set.image_files)
    why = no_information(gate_set)
    barely = None if why else barely_moving(gate_set)
    warning = f'the gates carry no information: {why}' if why else None
    plot_class_lines(
        gate_set,
        paths['lines'],
        blocks or default_line_blocks(gate_set),
        title=f'mean ECA gate per class, {n} images'
        + (f'; {warning}' if warning else ''),
    )
    if gate_set.class_names and gate_set.image_classes.any():
        plot_offset_heatmap(
            gate_set,
            paths['heatmap'],
            title="how far each class's mean gate is from the mean"
            + (f'\n{warning}' if warning else ''),
        )
    else:
        del paths['heatmap']  # no classes (images without annotations)
        # the figure of an earlier run into out_dir would pass for this one's
        stale = out_paths(out_dir)['heatmap']
        if osp.isfile(stale):
            os.remove(stale)
    plot_stage_histograms(gate_set, paths['hist'], title=warning)
    stats = stage_stats(gate_set)
    chance = between_by_chance(gate_set)
    for stage, values in chance.items():
        stats[stage].update(
            {f'between_chance_{k}': v for k, v in values.items()}
        )
    counts = gate_set.image_classes.sum(0).tolist()
    with atomic_writer(paths['stats']) as f:
        f.write(
            json.dumps(
                dict(
                    images=n,
                    classes=dict(zip(gate_set.class_names, counts)),
                    no_information=why,
                    barely_moving=barely,
                    stages=stats,
                ),
                indent=1,
                allow_nan=True,
            ).encode()
        )
    return dict(
        paths=paths,
        stats=stats,
        images=n,
        classes=list(gate_set.class_names),
        no_information=why,
        barely_moving=barely,
    )
