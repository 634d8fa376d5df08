"""``tools/test.py``: evaluate a checkpoint with COCO bbox/segm mAP.

Writes into the work dir (``--work-dir``, default work_dirs/<config name>):

* ``metrics.json``: a flat JSON object of what mmdet's CocoMetric returns
  (``coco/bbox_mAP``, ``coco/bbox_mAP_50``, ..., ``coco/segm_mAP_l`` and the
  per-class ``coco/<class>_precision``; NaN becomes ``null``);
* ``results.bbox.json`` / ``results.segm.json``: the detections in COCO
  result format (CocoMetric's ``outfile_prefix=<work dir>/results``), with
  the dataset's own (possibly non-contiguous) category ids.

``--out FILE.pkl`` also dumps every image's predictions to a pickle, as
mmdet's ``tools/test.py --out`` does (mmdet's ``DumpDetResults`` metric; the
input of mmdet's ``analysis_tools/confusion_matrix.py`` and friends).

CocoMetric runs with ``classwise=True`` so the log shows mmdet's per-class AP
table.
"""

import argparse
import glob
import json
import math
import os
import os.path as osp
import shutil
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmengine.config import Config, ConfigDict

from ..engine import (
    EcaMmdetError,
    NoSpaceError,
    atomic_write,
    get_launch_rank,
    lock_work_dir,
    no_space_left,
    refuse_overwriting_inputs,
    setup_distributed,
)
from ..engine.checkpoint import load_fitting_checkpoint
from .common import (
    CliArgumentParser,
    ConfigError,
    add_common_args,
    add_hooks,
    build_runner,
    check_loop_cfgs,
    load_config,
    log_data_warnings,
    resolve_work_dir,
    run_cli,
)
from .preflight import preflight_check

__all__ = [
    'build_parser',
    'build_test_config',
    'check_checkpoint_fits',
    'configure_coco_metrics',
    'main',
    'write_metrics',
]

METRICS_FILE = 'metrics.json'
RESULTS_PREFIX = 'results'
# The outputs of one test are written here first, then renamed into the
# work dir together: never a mix of two runs' files.
STAGING_DIR = '.test_outputs.partial'


def build_parser() -> argparse.ArgumentParser:
    parser = CliArgumentParser(
        prog='tools/test.py',
        description='Test a checkpoint: COCO bbox and segm mAP.',
    )
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file to test')
    parser.add_argument(
        '--work-dir',
        help='where metrics.json and results.{bbox,segm}.json go (default: '
        "the config's work_dir, else work_dirs/<config name>)",
    )
    parser.add_argument(
        '--show-dir',
        help='save images with the predictions drawn on them to this '
        'directory',
    )
    parser.add_argument(
        '--out',
        help='also dump the predictions to this pickle file (.pkl/.pickle), '
        "as mmdet's tools/test.py --out does, for offline analysis",
    )
    add_common_args(parser)
    return parser


def _is_coco_metric(metric: Any) -> bool:
    return (
        isinstance(metric, dict)
        and str(metric.get('type', '')).split('.')[-1] == 'CocoMetric'
    )


def configure_coco_metrics(cfg: Config, work_dir: str) -> int:
    """Make every CocoMetric of ``cfg.test_evaluator`` classwise and dump its
    detections to ``<work_dir>/results[_i].{bbox,segm}.json``.

    Returns:
        int: How many CocoMetrics were configured.
    """
    evaluator = cfg.get('test_evaluator', None)
    metrics = (
        evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    )
    count = 0
    for metric in metrics:
        if not _is_coco_metric(metric):
            continue
        suffix = '' if count == 0 else f'_{count}'
        metric['classwise'] = True
        metric['format_only'] = False
        metric['outfile_prefix'] = osp.join(work_dir, RESULTS_PREFIX + suffix)
        count += 1
    return count


def _enable_visualization(cfg: Config, show_dir: str) -> None:
    """Render every test image into ``show_dir`` (ground truth beside the
    prediction, stable class colours, a contact sheet at the end) the way
    mmdet's ``tools/test.py --show-dir`` does: ``draw=True`` and
    ``test_out_dir`` on the visualization hook, here
    :class:`~eca_mmdet.hooks.RenderPredictionsHook` (mmdet's
    ``DetVisualizationHook`` with unique file names and a contact sheet),
    and :class:`~eca_mmdet.visualization.StableColorDetVisualizer` as the
    visualizer (the config's ``vis_backends`` are kept)."""
    hooks = cfg.get('default_hooks', None) or ConfigDict()
    hook = dict(hooks.get('visualization', None) or {})
    if hook.get('type') in (
        None,
        'DetVisualizationHook',
        'mmdet.DetVisualizationHook',
    ):
        hook['type'] = 'RenderPredictionsHook'
    hook.update(draw=True, test_out_dir=osp.abspath(show_dir), score_thr=0.3)
    hooks['visualization'] = ConfigDict(hook)
    cfg.default_hooks = hooks
    visualizer = dict(cfg.get('visualizer', None) or {})
    if visualizer.get('type') in (
        None,
        'DetLocalVisualizer',
        'mmdet.DetLocalVisualizer',
    ):
        visualizer['type'] = 'StableColorDetVisualizer'
    visualizer.setdefault('name', 'visualizer')
    cfg.visualizer = ConfigDict(visualizer)


def _add_dump_results(cfg: Config, out: str) -> None:
    """Append mmdet's ``DumpDetResults`` to ``cfg.test_evaluator``."""
    if not out.endswith(('.pkl', '.pickle')):
        raise ConfigError(
            f'--out {out}: the results file must end with .pkl or .pickle'
        )
    evaluator = cfg.get('test_evaluator', None)
    if evaluator is None:
        metrics = []
    elif isinstance(evaluator, (list, tuple)):
        metrics = list(evaluator)
    else:
        metrics = [evaluator]
    metrics.append(ConfigDict(type='DumpDetResults', out_file_path=out))
    cfg.test_evaluator = metrics


def build_test_config(args: argparse.Namespace) -> Config:
    """The config for ``args``: file + ``--cfg-options`` + the CLI flags."""
    cfg = load_config(args.config, args.cfg_options)
    work_dir = resolve_work_dir(cfg, args.config, args.work_dir)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    check_loop_cfgs(cfg, args.config, keys=('test_cfg',))
    configure_coco_metrics(cfg, work_dir)
    if getattr(args, 'out', None) is not None:
        _add_dump_results(cfg, args.out)
    add_hooks(cfg, ['SafeImageLoadingHook'])
    if args.show_dir:
        _enable_visualization(cfg, args.show_dir)
    return cfg


def _json_value(value: Any) -> Any:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return value
    return None if math.isnan(value) or math.isinf(value) else value


def write_metrics(metrics: Dict[str, Any], path: str) -> str:
    """Write ``metrics`` as a flat JSON object (atomically) to ``path``."""
    flat = {str(k): _json_value(v) for k, v in metrics.items()}
    atomic_write(json.dumps(flat, indent=2, sort_keys=True) + '\n', path)
    return path


def check_checkpoint_fits(model, checkpoint: str, config: str) -> None:
    """Refuse a checkpoint whose weights do not fit ``model`` exactly.

    mmengine loads the checkpoint to test non-strictly: the weights of
    another model (another depth or ECA kernel size) would be partly left
    random, and the test would write a real-looking ``metrics.json`` of a
    mAP near 0.

    Raises:
        CheckpointMismatchError: naming the checkpoint, the config and the
            first mismatched keys and shapes.
    """
    fitted = load_fitting_checkpoint(
        model,
        checkpoint,
        f'the model of {config}',
        fix='test it with the config it was trained with',
    )
    bad = nonfinite_weights(fitted.state_dict)
    if bad:
        shown = ', '.join(bad[:3]) + (' ...' if len(bad) > 3 else '')
        raise EcaMmdetError(
            f'checkpoint {checkpoint} holds NaN or infinite weights '
            f'({len(bad)} tensor(s): {shown}): the training diverged before '
            'it was saved; test an earlier epoch_*.pth'
        )


def nonfinite_weights(state: Dict[str, Any]) -> List[str]:
    """The names of the floating-point tensors of ``state`` holding a NaN
    or an infinity."""
    return [
        name
        for name, value in state.items()
        if torch.is_tensor(value)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]


def dataset_inputs(cfg: Config) -> Dict[str, List[str]]:
    """The annotation files and image directories of the test data set
    (also inside dataset wrappers), as the guard of the outputs names
    them."""
    anns: List[str] = []
    dirs: List[str] = []
    loader = cfg.get('test_dataloader', None) or {}
    stack = [loader.get('dataset')]
    while stack:
        dataset = stack.pop()
        if not isinstance(dataset, dict):
            continue
        stack.extend(dataset.get('datasets') or ())
        stack.append(dataset.get('dataset'))
        root = dataset.get('data_root') or ''
        if isinstance(dataset.get('ann_file'), str) and dataset['ann_file']:
            anns.append(osp.join(root, dataset['ann_file']))
        prefix = dataset.get('data_prefix') or {}
        img = prefix.get('img') if isinstance(prefix, dict) else None
        if isinstance(img, str):
            dirs.append(osp.join(root, img) if (root or img) else '.')
    return {'annotation file': anns, 'image directory': dirs}


def _output_files(cfg: Config) -> List[str]:
    """The files a test writes into the work dir: ``metrics.json`` and
    the results of every CocoMetric (``results[_i].{bbox,segm}.json``)."""
    evaluator = cfg.get('test_evaluator', None)
    metrics = (
        evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    )
    count = sum(1 for metric in metrics if _is_coco_metric(metric))
    names = [METRICS_FILE]
    for i in range(count):
        prefix = RESULTS_PREFIX + ('' if i == 0 else f'_{i}')
        names += [f'{prefix}.bbox.json', f'{prefix}.segm.json']
    return [osp.join(cfg.work_dir, name) for name in names]


def check_test_outputs(cfg: Config, args: argparse.Namespace) -> None:
    """Refuse outputs (metrics and results, ``--out``, ``--show-dir``)
    that would overwrite the test's inputs (config, checkpoint, the data
    set's annotation file and images)."""
    inputs: Dict[str, Any] = dict(
        config=args.config, checkpoint=args.checkpoint
    )
    inputs.update(dataset_inputs(cfg))
    refuse_overwriting_inputs(
        {
            '--work-dir': _output_files(cfg),
            '--out': getattr(args, 'out', None),
        },
        inputs,
    )
    # renderings are named after the images: only images can be replaced
    refuse_overwriting_inputs(
        (),
        {'image directory': inputs['image directory']},
        output_dirs={'--show-dir': getattr(args, 'show_dir', None)},
    )


def _written_set(work_dir: str) -> List[str]:
    """The test outputs of an earlier run in ``work_dir``."""
    found = glob.glob(
        osp.join(glob.escape(work_dir), f'{RESULTS_PREFIX}*.json')
    )
    metrics = osp.join(work_dir, METRICS_FILE)
    return sorted(found + ([metrics] if osp.isfile(metrics) else []))


def publish_outputs(staging: str, work_dir: str) -> List[str]:
    """Move every file of ``staging`` into ``work_dir`` (renames in one
    file system: no write can fail half-way) and remove ``staging``;
    returns the files of an earlier run that this run did not replace."""
    names = sorted(os.listdir(staging))
    for name in names:
        os.replace(osp.join(staging, name), osp.join(work_dir, name))
    os.rmdir(staging)
    return [p for p in _written_set(work_dir) if osp.basename(p) not in names]


def _no_space(work_dir: str, error: BaseException) -> NoSpaceError:
    earlier = _written_set(work_dir)
    kept = (
        f'the files there are still those of the earlier run: '
        f'{", ".join(osp.basename(p) for p in earlier)}'
        if earlier
        else 'nothing was written there'
    )
    return NoSpaceError(
        f'no space left on the device while writing the test outputs into '
        f'{work_dir} ({getattr(error, "filename", None) or error}): no file was '
        f'replaced, {kept}; free some space and run the test again'
    )


def _test(args: argparse.Namespace) -> int:
    from mmdet.utils import setup_cache_size_limit_of_dynamo

    setup_cache_size_limit_of_dynamo()

    cfg = build_test_config(args)
    check_test_outputs(cfg, args)
    data_warnings = []
    preflight_check(
        cfg,
        mode='test',
        checkpoint=args.checkpoint,
        warnings=data_warnings,
        read_annotations=get_launch_rank(args.launcher) == 0,
    )
    if args.check:
        if get_launch_rank(args.launcher) == 0:
            lock_work_dir(cfg.work_dir, hold=False)
        log_data_warnings(data_warnings)
        print(
            f'ok: {args.config} is ready to test {args.checkpoint} '
            f'(results in {cfg.work_dir})'
        )
        return 0
    rank = get_launch_rank(args.launcher)
    if rank == 0:  # one run per work dir: training or test
        lock_work_dir(cfg.work_dir)
    staging = osp.join(cfg.work_dir, STAGING_DIR)
    if rank == 0:
        if osp.isdir(staging):  # left by a killed test
            shutil.rmtree(staging)
        os.makedirs(staging)
    configure_coco_metrics(cfg, staging)
    setup_distributed(cfg, args.launcher)
    runner = build_runner(cfg, args.config)
    log_data_warnings(data_warnings, runner)
    check_checkpoint_fits(runner.model, args.checkpoint, args.config)
    try:
        metrics = runner.test()
        if runner.rank != 0:
            return 0
        if not metrics:
            runner.logger.warning(
                'the evaluator returned no metrics (no detections at all?); '
                f'{METRICS_FILE} is empty'
            )
        write_metrics(metrics or {}, osp.join(staging, METRICS_FILE))
        stale = publish_outputs(staging, cfg.work_dir)
    except (OSError, RuntimeError) as e:
        full = no_space_left(e)
        if full is None:
            raise
        raise _no_space(cfg.work_dir, full) from None
    finally:  # published (then gone), or not to be mixed with a later run
        if runner.rank == 0 and osp.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    path = osp.join(cfg.work_dir, METRICS_FILE)
    runner.logger.info(f'metrics written to {path}')
    if stale:
        runner.logger.warning(
            f'{", ".join(stale)}: from an earlier test into {cfg.work_dir}, '
            'not written by this one (its evaluator has no such output)'
        )
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``tools/test.py``; returns the exit status."""
    return run_cli(_test, build_parser(), argv)
