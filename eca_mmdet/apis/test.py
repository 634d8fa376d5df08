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
import json
import math
import os.path as osp
from typing import Any, Dict, Optional, Sequence

from mmengine.config import Config, ConfigDict

from ..engine import atomic_write, get_launch_rank, setup_distributed
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
    load_fitting_checkpoint(
        model,
        checkpoint,
        f'the model of {config}',
        fix='test it with the config it was trained with',
    )


def _test(args: argparse.Namespace) -> int:
    from mmdet.utils import setup_cache_size_limit_of_dynamo

    setup_cache_size_limit_of_dynamo()

    cfg = build_test_config(args)
    data_warnings = []
    preflight_check(
        cfg,
        mode='test',
        checkpoint=args.checkpoint,
        warnings=data_warnings,
        read_annotations=get_launch_rank(args.launcher) == 0,
    )
    if args.check:
        log_data_warnings(data_warnings)
        print(
            f'ok: {args.config} is ready to test {args.checkpoint} '
            f'(results in {cfg.work_dir})'
        )
        return 0
    setup_distributed(cfg, args.launcher)
    runner = build_runner(cfg, args.config)
    log_data_warnings(data_warnings, runner)
    check_checkpoint_fits(runner.model, args.checkpoint, args.config)
    metrics = runner.test()
    if runner.rank == 0:
        if not metrics:
            runner.logger.warning(
                'the evaluator returned no metrics (no detections at all?); '
                f'{METRICS_FILE} is empty'
            )
        path = write_metrics(
            metrics or {}, osp.join(cfg.work_dir, METRICS_FILE)
        )
        runner.logger.info(f'metrics written to {path}')
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``tools/test.py``; returns the exit status."""
    return run_cli(_test, build_parser(), argv)
