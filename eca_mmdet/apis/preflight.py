"""Checks run before a Runner is built, so that a missing dataset or
checkpoint stops a run at once with one clear message.

Without them, a missing COCO directory surfaces minutes later as a
``FileNotFoundError`` traceback from inside a dataloader worker, and a missing
backbone checkpoint only after the whole model was built.
:func:`preflight_check` walks the config the way mmengine will use it and
raises :class:`PreflightError` naming the expected path, the config key it
comes from and how to override it. It also reads the COCO annotation files
(rank 0 only), including each ``CocoMetric`` ``ann_file``, which must hold the
images and classes of the data set the metric scores and at least one
annotation to score; for val/test sets it reads every image header (size,
empty file). And it builds the model once (no weights loaded), so that a bad
backbone argument is named at ``--check`` too, and, for training, checks that
the pretrained weights of an ECAResNet backbone fit it
(:func:`check_pretrained_fits`).

Measured on 2 shared cores of an AMD EPYC, warm page cache (torch 2.13.0,
commit 95bd109, 2026-12-01): reading the headers (size
and EXIF orientation) of 5000 640x480 JPEGs adds 0.9 s (0.18 ms each), so
val/test sets are read at every start; training images are not (COCO's 118k
would add ~21 s warm, minutes from a cold disk): the loader compares each
decoded training image with its annotated size and skips it
(:class:`~eca_mmdet.datasets.SafeLoadImageFromFile`). Building the model for
the check takes 0.8 s for Mask R-CNN ECA-ResNet-50.
"""

import os
import os.path as osp
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
)

from mmengine.config import Config

from ..datasets.coco_check import _load, check_coco_file
from ..engine.checkpoint import (
    checkpoint_file_problem,
    load_fitting_checkpoint,
    torchvision_importable,
)
from ..engine.errors import CONFIG_BUILD_ERRORS, EcaMmdetError
from ..models import ECAResNet
from .recipe_check import config_variable_warnings, learning_warnings

__all__ = [
    'PreflightError',
    'check_pretrained_fits',
    'preflight_check',
    'iter_datasets',
    'iter_pretrained',
]


class PreflightError(EcaMmdetError):
    """A file or directory the run needs does not exist."""


def _is_remote(path: Any, backend_args: Optional[dict] = None) -> bool:
    if not isinstance(path, str):
        return True  # not something we can check
    if '://' in path or path.startswith(('s3:', 'petrel:', 'http:')):
        return True
    backend = (backend_args or {}).get('backend', 'local')
    return backend not in (None, 'local', 'disk')


def _shown(path: str) -> str:
    """``path`` and, when relative, where that is from the current dir."""
    if osp.isabs(path):
        return path
    return f'{path} (i.e. {osp.abspath(path)})'


def iter_datasets(ds_cfg: Any, key: str) -> Iterator[Tuple[str, dict]]:
    """Yield ``(config key, dataset cfg)`` for every leaf dataset, going
    through wrappers (``dataset=``) and concatenations (``datasets=[...]``)."""
    if not isinstance(ds_cfg, dict):
        return
    if isinstance(ds_cfg.get('dataset'), dict):
        yield from iter_datasets(ds_cfg['dataset'], f'{key}.dataset')
    elif isinstance(ds_cfg.get('datasets'), (list, tuple)):
        for i, sub in enumerate(ds_cfg['datasets']):
            yield from iter_datasets(sub, f'{key}.datasets.{i}')
    else:
        yield key, ds_cfg


def iter_pretrained(node: Any, key: str) -> Iterator[Tuple[str, str]]:
    """Yield ``(config key, checkpoint)`` of every ``init_cfg`` of type
    ``Pretrained`` (or ``pretrained=`` string) found under ``node``."""
    if isinstance(node, dict):
        if node.get('type') == 'Pretrained' and isinstance(
            node.get('checkpoint'), str
        ):
            yield f'{key}.checkpoint', node['checkpoint']
        for k, v in node.items():
            if k == 'pretrained' and isinstance(v, str):
                yield f'{key}.pretrained', v
            else:
                yield from iter_pretrained(v, f'{key}.{k}' if key else k)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from iter_pretrained(v, f'{key}.{i}')


def _join(root: Optional[str], path: str) -> str:
    """Resolve ``path`` against ``root`` as mmengine's BaseDataset does."""
    if root and not osp.isabs(path):
        return osp.join(root, path)
    return path


def _coco_like(ds: dict) -> bool:
    """Whether mmdet reads ``ds`` with CocoDataset's own parser."""
    from mmdet.datasets import CocoDataset
    from mmdet.registry import DATASETS

    ds_type = ds.get('type', None)
    cls = DATASETS.get(ds_type) if isinstance(ds_type, str) else ds_type
    return (
        isinstance(cls, type)
        and issubclass(cls, CocoDataset)
        and cls.load_data_list is CocoDataset.load_data_list
        and cls.parse_data_info is CocoDataset.parse_data_info
    )


def _loads_masks(pipeline: Any) -> bool:
    return any(
        isinstance(t, dict)
        and 'LoadAnnotations' in str(t.get('type', ''))
        and t.get('with_mask', False)
        for t in (pipeline or [])
    )


def _applies_exif(pipeline: Any) -> bool:
    """Whether the pipeline's image loader rotates images by their EXIF
    orientation (mmcv does for color_type 'color'/'grayscale' with the cv2
    and pillow backends)."""
    for t in pipeline or []:
        if isinstance(t, dict) and 'LoadImage' in str(t.get('type', '')):
            return t.get('color_type', 'color') in (
                'color',
                'grayscale',
            ) and t.get('imdecode_backend', 'cv2') in ('cv2', 'pillow')
    return True


def _check_annotations(
    key: str, ds: dict, warnings: List[str]
) -> Optional[Any]:
    """Check the COCO annotation file of ``ds`` as mmdet will read it; for
    a val/test set also read every image header (size, empty file). Returns
    the :class:`~eca_mmdet.datasets.CocoFileReport`, None if not checked."""
    root = ds.get('data_root', None)
    ann_file = ds.get('ann_file', None)
    if (
        not ann_file
        or _is_remote(ann_file, ds.get('backend_args'))
        or not str(ann_file).endswith('.json')
        or not _coco_like(ds)
    ):
        return None
    prefix = (ds.get('data_prefix', None) or {}).get('img', None)
    img_dir = None
    if isinstance(prefix, str) and not _is_remote(prefix):
        img_dir = _join(root, prefix) if prefix else root
    test_mode = bool(ds.get('test_mode', False))
    report = check_coco_file(
        _join(root, ann_file),
        classes=_dataset_classes(ds),
        with_mask=_loads_masks(ds.get('pipeline', None)),
        test_mode=test_mode,
        filter_cfg=ds.get('filter_cfg', None),
        img_dir=img_dir,
        read_images=test_mode,
        exif_orientation=_applies_exif(ds.get('pipeline', None)),
    )
    missing = report.missing_files
    if missing and test_mode:
        raise PreflightError(
            f'{len(missing)} of the {report.num_images} images of '
            f'{report.path} are missing ({key}), e.g. {missing[0]}; '
            'evaluating without them would score their objects as missed'
        )
    if report.bad_images:
        file, problem = report.bad_images[0]
        more = len(report.bad_images) - 1
        raise PreflightError(
            f'image {file} {problem} in {report.path} ({key})'
            + (
                f'; {more} more image(s) of it have such problems'
                if more
                else ''
            )
            + '; evaluating it would fail or misplace its objects: replace '
            'the file or fix its width/height'
        )
    if missing and len(missing) == report.num_images:
        raise PreflightError(
            f'none of the {report.num_images} images of {report.path} '
            f'exists under {img_dir} ({key}.data_prefix.img), e.g. '
            f'{missing[0]}'
        )
    warnings.extend(report.warnings())
    if missing:
        warnings.append(
            f'{len(missing)} of the {report.num_images} images of '
            f'{report.path} are missing ({key}), e.g. {missing[0]}; '
            'training skips them'
        )
    return report


def _check_dataset(loader_key: str, key: str, ds: dict) -> None:
    backend_args = ds.get('backend_args', None)
    root = ds.get('data_root', None)
    override = (
        f'point {loader_key} at your data with --cfg-options '
        f'{key}.data_root=DIR (and the other *_dataloader / '
        '*_evaluator.ann_file keys that use it)'
    )
    if root and not _is_remote(root, backend_args):
        if not osp.isdir(root):
            raise PreflightError(
                f'dataset directory not found: {_shown(root)} '
                f'({key}.data_root); {override}'
            )
    ann_file = ds.get('ann_file', None)
    if ann_file and not _is_remote(ann_file, backend_args):
        path = _join(root, ann_file)
        if not osp.isfile(path):
            raise PreflightError(
                f'annotation file not found: {_shown(path)} '
                f'({key}.ann_file={ann_file!r} under data_root={root!r}); '
                f'{override}, or set {key}.ann_file=FILE'
            )
    prefixes = ds.get('data_prefix', None) or {}
    if isinstance(prefixes, dict):
        for name, prefix in prefixes.items():
            if not isinstance(prefix, str) or _is_remote(prefix, backend_args):
                continue
            path = _join(root, prefix) if prefix else root
            if path and not osp.isdir(path):
                raise PreflightError(
                    f'image directory not found: {_shown(path)} '
                    f'({key}.data_prefix.{name}={prefix!r} under '
                    f'data_root={root!r}); {override}, or set '
                    f'{key}.data_prefix.{name}=DIR'
                )


def _dataset_classes(ds: dict) -> Optional[tuple]:
    """Class names of a dataset config: ``metainfo.classes``, else those of
    its registered type (e.g. COCO's 80); None when unknown."""
    classes = (ds.get('metainfo', None) or {}).get('classes', None)
    if classes is None:
        from mmdet.registry import DATASETS

        ds_type = ds.get('type', None)
        cls = DATASETS.get(ds_type) if isinstance(ds_type, str) else ds_type
        classes = getattr(cls, 'METAINFO', {}).get('classes', None)
    return tuple(classes) if classes is not None else None


def _model_class_counts(
    model: Any, key: str = 'model'
) -> Iterator[Tuple[str, int]]:
    """``(config key, num_classes)`` of every head of ``model``."""
    if isinstance(model, dict):
        for name, value in model.items():
            sub = f'{key}.{name}'
            if name == 'num_classes' and isinstance(value, int):
                yield sub, value
            else:
                yield from _model_class_counts(value, sub)
    elif isinstance(model, (list, tuple)):
        for i, value in enumerate(model):
            yield from _model_class_counts(value, f'{key}.{i}')


def _check_class_count(cfg: Config, key: str, ds: dict) -> None:
    classes = _dataset_classes(ds)
    if classes is None:
        return
    for head_key, count in _model_class_counts(cfg.get('model', None)):
        if count != len(classes):
            raise PreflightError(
                f'{head_key}={count}, but {key} has {len(classes)} classes '
                f'({key}.metainfo.classes: {", ".join(map(str, classes))}); '
                f'set {head_key}={len(classes)} (every head of the model) or '
                f"the dataset's metainfo.classes to match"
            )


def _coco_index(path: str, cache: Dict[str, Any]) -> Tuple[dict, set]:
    """``({image id: (file base name, width, height)}, {category names})``
    of a COCO file, read once per preflight run."""
    if path not in cache:
        data = _load(path)
        images = {
            img.get('id'): (
                osp.basename(str(img.get('file_name', ''))),
                img.get('width'),
                img.get('height'),
            )
            for img in data['images']
            if isinstance(img, dict)
        }
        names = {
            c.get('name') for c in data['categories'] if isinstance(c, dict)
        }
        cache[path] = (images, names)
    return cache[path]


def _same_file(a: str, b: str) -> bool:
    try:
        return osp.samefile(a, b)
    except OSError:
        return False


def _check_metric_covers(
    mkey: str, metric: dict, key: str, ds: dict, cache: Dict[str, Any]
) -> None:
    """A CocoMetric with its own ``ann_file`` scores the dataset's
    predictions against that file: it must hold the dataset's images (by id)
    and its classes (by name), or mmdet fails inside the metric (IndexError,
    or pycocotools' "Results do not correspond to current coco set") after
    the whole evaluation, or scores other images' ground truth."""
    ann_file = metric['ann_file']
    root, ds_ann = ds.get('data_root', None), ds.get('ann_file', None)
    if (
        not ds_ann
        or _is_remote(ds_ann, ds.get('backend_args'))
        or not str(ds_ann).endswith('.json')
        or not _coco_like(ds)
    ):
        return
    ds_path = _join(root, ds_ann)
    if not osp.isfile(ds_path) or _same_file(ds_path, ann_file):
        return
    ds_images, _ = _coco_index(ds_path, cache)
    images, names = _coco_index(ann_file, cache)
    fix = (
        f"point {mkey}.ann_file at the data set's annotation file "
        f'(--cfg-options {mkey}.ann_file={ds_path}), or leave it unset '
        'to evaluate against the data set itself'
    )
    what = (
        f'{mkey}.ann_file={ann_file!r} does not match {key} '
        f'(ann_file {ds_path})'
    )
    classes = _dataset_classes(ds) or ()
    absent = [c for c in classes if c not in names]
    if absent:
        raise PreflightError(
            f'{what}: its categories lack {len(absent)} of the '
            f'{len(classes)} classes of {key}.metainfo.classes ('
            f'{", ".join(map(str, absent[:5]))}'
            f'{", ..." if len(absent) > 5 else ""}); {fix}'
        )
    if metric.get('format_only', False):
        return  # results are only written; the file's images are not used
    unknown = [i for i in ds_images if i not in images]
    if unknown:
        raise PreflightError(
            f'{what}: {len(unknown)} of the {len(ds_images)} image ids of '
            f'the data set are not in it (e.g. '
            f'{", ".join(map(str, unknown[:5]))}); {fix}'
        )
    for img_id, image in ds_images.items():
        if images[img_id] != image:
            raise PreflightError(
                f'{what}: image id {img_id} is {_image_shown(image)} in the '
                f'data set but {_image_shown(images[img_id])} in it; {fix}'
            )


def _image_shown(image: tuple) -> str:
    name, width, height = image
    return f'{name} ({width}x{height})'


def _check_evaluator(
    key: str,
    evaluator: Any,
    read_annotations: bool = True,
    datasets: Sequence[Tuple[str, dict]] = (),
    cache: Optional[Dict[str, Any]] = None,
    reports: Optional[Dict[str, Any]] = None,
    warnings: Optional[List[str]] = None,
) -> None:
    """Check ``evaluator`` (one metric or a list); ``datasets`` are the
    ``(key, cfg)`` of the datasets it scores, whose images and classes each
    CocoMetric ``ann_file`` must hold, and ``reports`` their
    :class:`~eca_mmdet.datasets.CocoFileReport` by key (read only with
    ``read_annotations``). A CocoMetric that scores (not ``format_only``)
    needs at least one annotation it can score, or every metric is -1."""
    cache = {} if cache is None else cache
    reports = {} if reports is None else reports
    metrics = (
        evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    )
    for i, metric in enumerate(metrics):
        if not isinstance(metric, dict):
            continue
        mkey = key if len(metrics) == 1 else f'{key}.{i}'
        ann_file = metric.get('ann_file', None)
        local = bool(ann_file) and not _is_remote(
            ann_file, metric.get('backend_args')
        )
        if local and not osp.isfile(ann_file):
            raise PreflightError(
                f'evaluation annotation file not found: '
                f'{_shown(ann_file)} ({mkey}.ann_file); set it with '
                f'--cfg-options {mkey}.ann_file=FILE'
            )
        if not read_annotations or 'CocoMetric' not in str(
            metric.get('type', '')
        ):
            continue
        if ann_file:
            if not local or not str(ann_file).endswith('.json'):
                continue
            for ds_key, ds in datasets:
                _check_metric_covers(mkey, metric, ds_key, ds, cache)
            kinds = metric.get('metric', 'bbox')
            kinds = [kinds] if isinstance(kinds, str) else kinds
            classes = {_dataset_classes(ds) for _, ds in datasets}
            report = check_coco_file(
                ann_file,
                eval_mask='segm' in kinds,
                test_mode=True,
                classes=classes.pop() if len(classes) == 1 else None,
            )
            if (
                not any(_same_file(ann_file, r.path) for r in reports.values())
                and warnings is not None
            ):
                warnings.extend(report.warnings())
            scored, file = report.scored_images, ann_file
            ds_ids = set()
            for _, ds in datasets:
                ds_path = _join(
                    ds.get('data_root', None), ds.get('ann_file', None) or ''
                )
                if _coco_like(ds) and osp.isfile(ds_path):
                    ds_ids |= set(_coco_index(ds_path, cache)[0])
            if ds_ids:
                scored = scored & ds_ids
        else:
            checked = [reports[k] for k, _ in datasets if k in reports]
            if not checked or len(checked) < len(datasets):
                continue  # a data set we could not read
            scored = set().union(*(r.scored_images for r in checked))
            file = ', '.join(r.path for r in checked)
        if not scored and not metric.get('format_only', False):
            raise PreflightError(
                f'{file} has no annotation {mkey} can score: none that is '
                'not a crowd region, of the classes of '
                f'{" / ".join(k for k, _ in datasets) or "the data set"}, '
                'on its images; every metric would be -1. Add the '
                f'annotations, or set {mkey}.format_only=True to only write '
                'the results'
            )


def _check_checkpoint(path: Optional[str], what: str, option: str) -> None:
    if not path or _is_remote(path):
        return
    expanded = osp.expanduser(path)
    if not osp.isfile(expanded):
        raise PreflightError(f'{what} not found: {_shown(expanded)}; {option}')
    problem = checkpoint_file_problem(expanded)
    if problem:
        raise PreflightError(f'{what} {_shown(expanded)} {problem}')


def _check_pretrained(cfg: Config) -> None:
    for key, ckpt in iter_pretrained(cfg.get('model', None), 'model'):
        init_key = key.rsplit('.', 1)[0]
        if (
            ckpt.startswith(('torchvision://', 'modelzoo://'))
            and not torchvision_importable()
        ):
            raise PreflightError(
                f'pretrained weights {ckpt} ({key}) need the torchvision '
                'model zoo, and torchvision cannot be imported; convert the '
                'weights with `python tools/convert_weights.py SRC DST` and '
                f'pass --cfg-options {key}=DST, or {init_key}=None to train '
                'from scratch'
            )
        if _is_remote(ckpt):
            continue
        path = osp.expanduser(ckpt)
        if not osp.isfile(path):
            raise PreflightError(
                f'pretrained checkpoint not found: {_shown(path)} ({key}); '
                f'create it with `python tools/convert_weights.py SRC '
                f'{ckpt}` from the official weights, or pass --cfg-options '
                f'{key}=PATH (or {init_key}=None to train from scratch)'
            )
        problem = checkpoint_file_problem(path)
        if problem:
            raise PreflightError(
                f'pretrained checkpoint {_shown(path)} ({key}) {problem}'
            )


def _sub_keys(node: Any, built: dict, key: str = 'model') -> List[str]:
    """Config keys under ``node`` of the dicts that ``built`` (a config a
    registry was building) was made from: same ``type``, and every other
    entry of theirs in ``built`` (the parent may add some, e.g. train_cfg).
    """
    found = []
    if isinstance(node, dict):
        if node.get('type', None) == built.get('type', None) and all(
            k in built and built[k] == v for k, v in node.items()
        ):
            found.append(key)
        for k, v in node.items():
            found.extend(_sub_keys(v, built, f'{key}.{k}'))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            found.extend(_sub_keys(v, built, f'{key}.{i}'))
    return found


def _failed_build(error: BaseException) -> Optional[dict]:
    """The config mmengine's ``build_from_cfg`` was building when
    ``error`` was raised (the innermost such call)."""
    built, tb = None, error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == 'build_from_cfg' and isinstance(
            frame.f_locals.get('cfg'), dict
        ):
            built = frame.f_locals['cfg']
        tb = tb.tb_next
    return built


def _check_model(cfg: Config) -> Optional[Any]:
    """Build ``cfg.model`` (a copy; no weights are loaded, ``init_cfg`` is
    not applied) so that an unknown type or a bad argument (an unknown
    ``arch``, an even ``eca_k_size``, a bad ``depth``) is reported at the
    check, naming the config key, instead of when the runner is built.
    Returns the model (None without a ``model`` dict)."""
    import copy
    import re

    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope

    model = cfg.get('model', None)
    if not isinstance(model, dict):
        return None
    try:
        with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', None) or 'mmdet'
        ):
            return MODELS.build(copy.deepcopy(model))
    except CONFIG_BUILD_ERRORS as e:
        text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        reason = (
            text.strip().splitlines() or ['a check in its constructor failed']
        )[0]
        built = _failed_build(e)
        keys = _sub_keys(model, built) if built is not None else []
        if isinstance(e, KeyError) and 'is not in the' in reason:
            keys = [f'{k}.type' for k in keys]
            reason = reason.split('. Please check', 1)[0]
        elif len(keys) == 1:
            # the argument the message names first
            named = {}
            for arg in built:
                found = re.search(rf'\b{re.escape(str(arg))}\b', reason)
                if arg != 'type' and found:
                    named[arg] = found.start()
            if named:
                keys = [f'{keys[0]}.{min(named, key=named.get)}']
        if not (isinstance(e, KeyError) and 'is not in the' in reason):
            reason = f'{type(e).__name__}: {reason}'
        where = ' / '.join(keys[:3]) or 'model'
        raise PreflightError(
            f'cannot build the model from {where}: {reason}; fix it with '
            f'--cfg-options {keys[0] if keys else "model..."}=...'
        ) from None


def _no_eca_hint(backbone: ECAResNet) -> Callable[[dict], str]:
    """What to do about weights that do not fit ``backbone``."""

    def hint(state: dict) -> str:
        missing = [k for k in backbone.state_dict() if k not in state]
        if missing and all('.eca.' in k for k in missing):
            return (
                'it has no ECA weights (a plain ResNet?): use ECA-Net '
                'weights converted with tools/convert_weights.py, or '
                'init_cfg=None to train from scratch'
            )
        return (
            'convert the source weights with `python '
            'tools/convert_weights.py SRC DST` (it reads depth, '
            'arch and k per stage from them) or set '
            'model.backbone.depth/arch/eca_k_size to match'
        )

    return hint


def check_pretrained_fits(model: Any) -> None:
    """Refuse the local ``Pretrained`` checkpoint of an ECAResNet in
    ``model`` (its ``init_cfg``) unless it fits: mmengine loads pretrained
    weights with ``strict=False`` and only logs what did not fit, so weights
    for another depth or ECA kernel size would leave part of the backbone
    random. Keys the backbone lacks (a classifier's ``fc``) are fine.
    Remote checkpoints are left to mmengine.

    Raises:
        CheckpointMismatchError: naming the checkpoint, the backbone and
            the first mismatched keys and shapes.
    """
    for module in model.modules():
        if not isinstance(module, ECAResNet):
            continue
        init_cfgs = module.init_cfg
        if not isinstance(init_cfgs, (list, tuple)):
            init_cfgs = [init_cfgs]
        for init_cfg in init_cfgs:
            if not (
                isinstance(init_cfg, dict)
                and init_cfg.get('type') == 'Pretrained'
                and isinstance(init_cfg.get('checkpoint'), str)
                and not _is_remote(init_cfg['checkpoint'])
            ):
                continue
            load_fitting_checkpoint(
                module,
                init_cfg['checkpoint'],
                module.describe(),
                what='backbone checkpoint',
                fix=_no_eca_hint(module),
                prefix=init_cfg.get('prefix'),
                ignore_unexpected=True,
            )


def preflight_check(
    cfg: Config,
    mode: str = 'train',
    checkpoint: Optional[str] = None,
    warnings: Optional[List[str]] = None,
    read_annotations: bool = True,
) -> List[str]:
    """Check that every local file ``cfg`` needs for ``mode`` exists.

    Args:
        cfg (Config): The final config (after ``--cfg-options``).
        mode (str): ``'train'`` checks the train (and, when ``val_cfg`` is
            set, val) dataloaders and evaluator, ``load_from``/``resume``
            and every ``Pretrained`` checkpoint of the model (an
            ECAResNet's must fit it); ``'test'``
            checks the test dataloader and evaluator and ``checkpoint``.
        checkpoint (str, optional): The checkpoint to test (``'test'``).
        warnings (list, optional): Receives one line per kind of annotation
            mmdet will skip and for missing training images (see
            :func:`eca_mmdet.datasets.check_coco_file`), for the caller to
            log.
        read_annotations (bool): Also read and check the COCO annotation
            files (and look for every image file), and that each
            ``CocoMetric`` ``ann_file`` holds the image ids and class names
            of the data set it scores. Distributed tools do it on rank 0
            only: a COCO train file is ~450 MB of JSON. For val/test sets
            the image headers are read as well.

    The model is built once from a copy of ``cfg.model`` (no weights
    loaded), so that a bad argument is named with its config key.

    Returns:
        list[str]: The config keys of the dataloaders that were checked.

    Raises:
        PreflightError: for the first missing path, naming it, its config
            key and the ``--cfg-options`` override.
        AnnotationError: for an annotation file mmdet cannot use, or a
            scored file with boxes pycocotools would score wrongly.
        CheckpointMismatchError: an ECAResNet's pretrained weights do not
            fit it (:func:`check_pretrained_fits`).
    """
    warnings = [] if warnings is None else warnings
    if mode == 'train':
        loaders = ['train_dataloader']
        evaluators = []
        if cfg.get('val_cfg', None) and cfg.get('val_dataloader', None):
            loaders.append('val_dataloader')
            evaluators.append('val_evaluator')
    elif mode == 'test':
        loaders, evaluators = ['test_dataloader'], ['test_evaluator']
    else:
        raise ValueError(f'mode must be "train" or "test", not {mode!r}')

    all_datasets = {
        key: list(iter_datasets(cfg[key].get('dataset'), f'{key}.dataset'))
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader')
        if isinstance(cfg.get(key, None), dict)
    }
    stale = config_variable_warnings(cfg, all_datasets)
    warnings.extend(stale)
    try:
        return _preflight(
            cfg,
            mode,
            checkpoint,
            warnings,
            read_annotations,
            loaders,
            evaluators,
        )
    except EcaMmdetError as error:
        if stale:  # the likely cause of a missing file or unknown class
            note = f'{error.args[0]} (note: {stale[0]})'
            error.args = (note, *error.args[1:])
        raise


def _epoch_images(ds_cfg: Any, key: str, reports: Dict[str, Any]):
    """Images in one epoch of the dataset config at ``key`` from the
    annotation reports, None where unknown (e.g. a class-balanced
    wrapper)."""
    if not isinstance(ds_cfg, dict):
        return None
    inner = ds_cfg.get('dataset', None)
    if isinstance(inner, dict):
        times = ds_cfg.get('times', None)
        if times is None:
            return None
        count = _epoch_images(inner, f'{key}.dataset', reports)
        return None if count is None else count * int(times)
    if isinstance(ds_cfg.get('datasets', None), (list, tuple)):
        counts = [
            _epoch_images(sub, f'{key}.datasets.{i}', reports)
            for i, sub in enumerate(ds_cfg['datasets'])
        ]
        return None if None in counts else sum(counts)
    report = reports.get(key, None)
    return None if report is None else report.kept_images


def _preflight(
    cfg: Config,
    mode: str,
    checkpoint: Optional[str],
    warnings: List[str],
    read_annotations: bool,
    loaders: List[str],
    evaluators: List[str],
) -> List[str]:
    checked = []
    loader_datasets = {}
    reports: Dict[str, Any] = {}
    for loader_key in loaders:
        loader = cfg.get(loader_key, None)
        if not isinstance(loader, dict):
            continue
        datasets = list(
            iter_datasets(loader.get('dataset', None), f'{loader_key}.dataset')
        )
        for key, ds in datasets:
            _check_dataset(loader_key, key, ds)
            _check_class_count(cfg, key, ds)
            if read_annotations:
                report = _check_annotations(key, ds, warnings)
                if report is not None:
                    reports[key] = report
        loader_datasets[loader_key] = datasets
        checked.append(loader_key)
    cache: Dict[str, Any] = {}
    for key in evaluators:
        if cfg.get(key, None) is not None:
            loader_key = key.replace('_evaluator', '_dataloader')
            _check_evaluator(
                key,
                cfg.get(key),
                read_annotations,
                loader_datasets.get(loader_key, []),
                cache,
                reports,
                warnings,
            )

    model = _check_model(cfg)
    if mode == 'train':
        load_from = cfg.get('load_from', None)
        model_cfg = cfg.get('model', None) or {}
        pretrained = bool(
            load_from
            or cfg.get('resume', False)
            or list(iter_pretrained(model_cfg.get('backbone', None), 'b'))
            or (model_cfg.get('init_cfg', None) or {}).get('type')
            == 'Pretrained'
        )
        warnings.extend(
            learning_warnings(
                cfg,
                _epoch_images(
                    (cfg.get('train_dataloader', None) or {}).get('dataset'),
                    'train_dataloader.dataset',
                    reports,
                ),
                pretrained,
                int(os.environ.get('WORLD_SIZE', 1)),
            )
        )
        _check_pretrained(cfg)
        if model is not None:
            check_pretrained_fits(model)
        if cfg.get('resume', False) and load_from:
            _check_checkpoint(
                load_from,
                'checkpoint to resume from',
                'pass an existing file to --resume, or --resume alone to '
                'continue from the latest checkpoint of the work dir',
            )
        else:
            _check_checkpoint(
                load_from,
                'checkpoint to initialise from (load_from)',
                'fix it with --cfg-options load_from=PATH (or load_from=None)',
            )
    else:
        _check_checkpoint(
            checkpoint,
            'checkpoint to test',
            'pass the path of a checkpoint written by '
            'tools/train.py (e.g. WORK_DIR/epoch_12.pth)',
        )
    return checked
