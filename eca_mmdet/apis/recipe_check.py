"""Warnings for configs that run but cannot do what their author meant, one
line each, printed by ``tools/train.py --check`` and logged when training
starts (:func:`~eca_mmdet.apis.preflight.preflight_check` calls these):

- a backbone trained from scratch (no ``load_from``, no pretrained
  ``init_cfg``) with frozen stages or frozen norm layers: those weights stay
  at their random initial values;
- a warm-up as long as the whole run or longer: the learning rate never
  reaches the configured one;
- a config variable (``data_root``, ``classes``, ``metainfo``,
  ``img_scale``) whose value no dataloader uses: a child config set it, but
  mmengine had already built the base's dataloaders, heads and pipelines
  from the base's value.
"""

import ast
import math
import os.path as osp
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from mmengine.config import Config

__all__ = ['config_variable_warnings', 'learning_warnings']

RECIPES = (
    'configs/custom/mask_rcnn_ecaresnet18_scratch.py (from scratch) or '
    'configs/custom/mask_rcnn_ecanet50_finetune.py (with weights); see '
    'configs/README.md'
)
# norm layers with running statistics, which norm_eval freezes
_BATCH_NORMS = ('BN', 'BN1d', 'BN2d', 'BN3d', 'SyncBN', 'BatchNorm')


def _walk(node: Any, key: str) -> Iterable[Tuple[str, Any]]:
    yield key, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f'{key}.{k}')
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _walk(v, f'{key}.{i}')


def _as_tuple(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value


def _under(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or inside it (a dataset root built as
    ``data_root + 'subset/'`` reads the variable too)."""
    path, root = osp.normpath(path), osp.normpath(root)
    return path == root or path.startswith(root.rstrip(osp.sep) + osp.sep)


def _inheriting_file_sets(path: Optional[str]) -> Set[str]:
    """The names a Python config file assigns at its top level, if it
    inherits (assigns ``_base_``); else, or when it cannot be read, an
    empty set."""
    if not path or not str(path).endswith('.py') or not osp.isfile(path):
        return set()
    try:
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        else:
            continue
        for target in targets:
            elements = getattr(target, 'elts', [target])
            names.update(e.id for e in elements if isinstance(e, ast.Name))
    return names if '_base_' in names else set()


def config_variable_warnings(
    cfg: Config, datasets: Dict[str, List[Tuple[str, dict]]]
) -> List[str]:
    """One line per top-level variable of ``cfg`` that none of
    ``datasets`` (loader key -> ``(config key, dataset cfg)`` of its leaf
    datasets) uses.

    The case it is for: a child config sets ``data_root``, ``classes`` or
    ``img_scale`` over a base that built its dicts from its own value;
    mmengine merges the child's variable but does not rebuild the base's
    dicts. So only variables that the file ``cfg.filename`` itself assigns
    while it inherits (a ``_base_``) are compared: a base's variable left
    as it was by a child that sets the dicts directly, or a config without
    a base (e.g. the one a run saves), says nothing. Only variables some
    dataset could use are compared (a ``data_root`` when a dataset has one,
    ``img_scale`` when a step of a dataloader has a ``scale`` or an
    ``img_scale``), and one that any dataset uses passes (a ``data_root``
    also as the start of a dataset's root), so multi-dataset configs that
    read several roots do not warn.
    """
    leaves = [item for items in datasets.values() for item in items]
    own = _inheriting_file_sets(cfg.filename)
    if not leaves or not own:
        return []
    source = osp.basename(cfg.filename) if cfg.filename else 'the config'
    advice = (
        'a variable set in a config does not reach the dicts its _base_ '
        'built from it (mmengine merges values, it does not re-run the '
        'base): set those keys too, or copy the recipe and edit it'
    )
    lines = []

    root = cfg.get('data_root', None)
    roots = [
        (key, ds['data_root'])
        for key, ds in leaves
        if isinstance(ds.get('data_root', None), str)
    ]
    if 'data_root' in own and isinstance(root, str) and roots:
        if not any(_under(r, root) for _, r in roots):
            key, used = roots[0]
            lines.append(
                f'{source} sets data_root={root!r}, but no dataloader reads '
                f'it ({key}.data_root={used!r}): {advice}'
            )

    wanted = cfg.get('classes', None) if 'classes' in own else None
    name = 'classes'
    if wanted is None and 'metainfo' in own:
        wanted = (cfg.get('metainfo', None) or {}).get('classes', None)
        name = 'metainfo.classes'
    declared = [
        (key, ds['metainfo']['classes'])
        for key, ds in leaves
        if isinstance(ds.get('metainfo', None), dict)
        and 'classes' in ds['metainfo']
    ]
    if isinstance(wanted, (list, tuple)) and declared:
        if all(_as_tuple(c) != _as_tuple(wanted) for _, c in declared):
            key, used = declared[0]
            lines.append(
                f'{source} sets {name}={_as_tuple(wanted)!r}, but no '
                f'dataloader uses them ({key}.metainfo.classes='
                f'{_as_tuple(used)!r}): {advice}'
            )

    scale = cfg.get('img_scale', None)
    # any scale of the dataloaders: pipelines of wrappers too
    # (MultiImageMixDataset), Mosaic's and MixUp's img_scale
    scales = [
        (f'{path}.{field}', node[field])
        for key in datasets
        for path, node in _walk(cfg.get(key, None), key)
        if isinstance(node, dict)
        for field in ('scale', 'img_scale')
        if field in node
    ]
    if 'img_scale' in own and isinstance(scale, (list, tuple)) and scales:
        if all(_as_tuple(s) != _as_tuple(scale) for _, s in scales):
            key, used = scales[0]
            lines.append(
                f'{source} sets img_scale={_as_tuple(scale)!r}, but no '
                f'pipeline step uses it ({key}={_as_tuple(used)!r}): '
                f'{advice}'
            )
    return lines


def _resnet_like(backbone: dict) -> bool:
    """Whether the backbone is mmdet's ResNet or a subclass (ECAResNet),
    whose defaults (frozen_stages=-1, BN, norm_eval=True) apply."""
    from mmdet.models.backbones import ResNet
    from mmdet.registry import MODELS

    kind = backbone.get('type', None)
    cls = MODELS.get(kind) if isinstance(kind, str) else kind
    return isinstance(cls, type) and issubclass(cls, ResNet)


def _frozen_parts(backbone: dict) -> List[str]:
    parts = []
    frozen = backbone.get('frozen_stages', -1)
    if frozen >= 0:
        stages = {0: '', 1: ' and stage 1'}.get(
            frozen, f' and stages 1-{frozen}'
        )
        parts.append(
            f'model.backbone.frozen_stages={frozen} keeps the stem{stages} '
            'at their random initial weights'
        )
    norm_cfg = backbone.get('norm_cfg', None) or dict(type='BN')
    if norm_cfg.get('requires_grad', True) is False:
        parts.append(
            'model.backbone.norm_cfg.requires_grad=False keeps the norm '
            'layers at scale 1, shift 0'
        )
    if norm_cfg.get('type', 'BN') in _BATCH_NORMS and backbone.get(
        'norm_eval', True
    ):
        parts.append(
            'model.backbone.norm_eval=True keeps the BatchNorm statistics at '
            'their initial mean 0, variance 1'
        )
    return parts


def _train_iterations(
    cfg: Config, epoch_images: Optional[int], world_size: int
) -> Tuple[Optional[int], str]:
    """(iterations of the run, how they were counted); None where
    unknown."""
    train_cfg = cfg.get('train_cfg', None) or {}
    loader = cfg.get('train_dataloader', None) or {}
    if 'max_iters' in train_cfg:
        return int(train_cfg['max_iters']), 'train_cfg.max_iters'
    epochs = train_cfg.get('max_epochs', None)
    batch = loader.get('batch_size', None)
    if not epochs or not batch or not epoch_images:
        return None, ''
    per_epoch = math.ceil(epoch_images / (batch * world_size))
    how = (
        f'{epochs} epochs x {per_epoch} iterations ({epoch_images} images, '
        f'batch {batch} x {world_size} process(es))'
    )
    return int(epochs) * per_epoch, how


def _as_long(warm_up: float, run: int) -> str:
    return 'as long as' if warm_up == run else 'longer than'


def learning_warnings(
    cfg: Config,
    epoch_images: Optional[int],
    pretrained: bool,
    world_size: int = 1,
) -> List[str]:
    """One line per reason the run of ``cfg`` cannot learn as configured.

    Args:
        cfg (Config): The final training config.
        epoch_images (int, optional): Images in one training epoch (after
            ``filter_cfg``), None when unknown (the warm-up is then only
            compared in epochs).
        pretrained (bool): Whether the backbone starts from trained weights
            (``load_from``, ``resume`` or a ``Pretrained`` init).
        world_size (int): Training processes the epoch is split over.
    """
    lines = []
    backbone = (cfg.get('model', None) or {}).get('backbone', None)
    if not pretrained and isinstance(backbone, dict):
        if _resnet_like(backbone):
            parts = _frozen_parts(backbone)
            if parts:
                lines.append(
                    'the backbone trains from scratch (no load_from, no '
                    'pretrained init_cfg), but '
                    + '; '.join(parts)
                    + ': it cannot learn as configured; set frozen_stages=-1,'
                    ' norm_eval=False (GroupNorm trains better from scratch),'
                    f' or start from a recipe: {RECIPES}'
                )

    total, how = _train_iterations(cfg, epoch_images, world_size)
    schedulers = cfg.get('param_scheduler', None) or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for index, sched in enumerate(schedulers):
        if not isinstance(sched, dict) or sched.get('begin', 0) != 0:
            continue
        kind = str(sched.get('type', ''))
        if 'Warmup' not in kind and not (
            kind.endswith('LinearLR') and sched.get('start_factor', 1) < 1
        ):
            continue
        end = sched.get('end', None)
        if not isinstance(end, (int, float)) or end <= 0:
            continue
        by_epoch = sched.get('by_epoch', True)
        if by_epoch:
            epochs = (cfg.get('train_cfg', None) or {}).get('max_epochs')
            if epochs and end >= epochs:
                lines.append(
                    f'param_scheduler.{index} ({kind}) warms up for {end} '
                    f'epoch(s), {_as_long(end, epochs)} the whole run '
                    f'({epochs} epochs): the learning rate never reaches the '
                    'configured one; shorten the warm-up or train longer'
                )
            continue
        if total is not None and end >= total:
            lines.append(
                f'param_scheduler.{index} ({kind}) warms up for {end} '
                f'iterations, {_as_long(end, total)} the whole run ({total} '
                f'iterations: {how}): the learning rate never reaches the '
                'configured one; shorten the warm-up (e.g. end=1 epoch: '
                'by_epoch=True, convert_to_iter_based=True) or train longer'
            )
    return lines
