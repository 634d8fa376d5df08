"""``tools/train.py``: train a detector from a config with mmengine's Runner.

Compared with mmdet's own tool it checks the data and checkpoints before
starting (:func:`~eca_mmdet.apis.preflight.preflight_check`), runs
distributed on CPU with gloo (:func:`~eca_mmdet.engine.setup_distributed`),
loads checkpoints with ``weights_only=True`` (``--resume`` works under
torch >= 2.6), and reports bad input in one line with exit status 1.
"""

import argparse
import contextlib
import os
import os.path as osp
import re
import signal
import time
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.config import Config, ConfigDict
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ..engine import (
    CheckpointMismatchError,
    EcaMmdetError,
    get_launch_rank,
    lock_work_dir,
    setup_distributed,
)
from ..engine.checkpoint import load_fitting_checkpoint
from .common import (
    CliArgumentParser,
    ConfigError,
    Interrupted,
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
    'SAFETY_HOOKS',
    'StopOnSigintHook',
    'build_parser',
    'build_train_config',
    'check_load_from_fits',
    'check_resume_fits',
    'last_checkpoint',
    'main',
    'work_dir_checkpoints',
]

# Added to every run whose config does not list them (the project's configs
# do, so mmdet's own tools/train.py keeps them too).
SAFETY_HOOKS = ('NonFiniteLossHook', 'EpochSeedHook', 'SafeImageLoadingHook')


def build_parser() -> argparse.ArgumentParser:
    parser = CliArgumentParser(
        prog='tools/train.py', description='Train a detector.'
    )
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--work-dir',
        help="where logs and checkpoints go (default: the config's "
        'work_dir, else work_dirs/<config name>)',
    )
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        metavar='CHECKPOINT',
        help='resume training (optimizer, schedulers, epoch) from '
        'CHECKPOINT; without a value, from the latest checkpoint of the '
        'work dir',
    )
    parser.add_argument(
        '--start-over',
        action='store_true',
        help='train from the start in a work dir that holds checkpoints of '
        'an earlier training: they are moved into '
        'WORK_DIR/earlier_<time>/ first (without this flag, or --resume, '
        'such a work dir is refused)',
    )
    parser.add_argument(
        '--partial-load',
        action='store_true',
        help="load_from: load the checkpoint's weights that fit the model "
        'and leave the others at their initial values (without it, or '
        'partial_load = True in the config, a checkpoint that does not fit '
        'stops the training)',
    )
    parser.add_argument(
        '--amp',
        action='store_true',
        help='automatic mixed precision (needs a CUDA GPU)',
    )
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the total batch size over the '
        "config's auto_scale_lr.base_batch_size",
    )
    parser.add_argument(
        '--lr-scale',
        type=float,
        metavar='F',
        help='multiply the learning rate by F, also after --resume (which '
        'restores the saved rate), e.g. 0.1 after a non-finite loss',
    )
    add_common_args(parser)
    return parser


def build_train_config(args: argparse.Namespace) -> Config:
    """The config for ``args``: file + ``--cfg-options`` + the CLI flags."""
    cfg = load_config(args.config, args.cfg_options)
    resolve_work_dir(cfg, args.config, args.work_dir)

    if args.amp:
        if not torch.cuda.is_available():
            raise EcaMmdetError(
                "--amp needs a CUDA GPU (mmengine's AmpOptimWrapper does not "
                'support the CPU); run without --amp on CPU'
            )
        optim_wrapper = cfg.get('optim_wrapper', None)
        if optim_wrapper is None:
            raise ConfigError(f'--amp: {args.config} has no optim_wrapper')
        if optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper':
            optim_wrapper.type = 'AmpOptimWrapper'
            optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.auto_scale_lr:
        scale = cfg.get('auto_scale_lr', None)
        if not isinstance(scale, dict) or 'base_batch_size' not in scale:
            raise ConfigError(
                f'--auto-scale-lr: {args.config} has no '
                'auto_scale_lr.base_batch_size; add it to the config or pass '
                '--cfg-options auto_scale_lr.base_batch_size=N'
            )
        scale['enable'] = True

    check_loop_cfgs(cfg, args.config)
    add_hooks(cfg, SAFETY_HOOKS)
    if args.lr_scale is not None:
        if not args.lr_scale > 0:
            raise ConfigError(f'--lr-scale must be > 0, got {args.lr_scale}')
        cfg.custom_hooks.append(
            ConfigDict(type='ScaleLrHook', factor=args.lr_scale)
        )

    if args.resume == 'auto':
        cfg.resume = True
        # explicit: mmengine alone trusts last_checkpoint only
        cfg.load_from = last_checkpoint(cfg.work_dir)
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    elif cfg.get('resume', False) and not cfg.get('load_from', None):
        cfg.load_from = last_checkpoint(
            cfg.work_dir
        )  # resume=True in a config
    return cfg


_CHECKPOINT_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def work_dir_checkpoints(work_dir: str) -> List[str]:
    """The ``epoch_N.pth`` / ``iter_N.pth`` files of ``work_dir``, oldest
    (lowest N) first."""
    if not osp.isdir(work_dir):
        return []
    found = []
    for name in os.listdir(work_dir):
        m = _CHECKPOINT_NAME.match(name)
        path = osp.join(work_dir, name)
        if m and osp.isfile(path):
            found.append((int(m.group(2)), m.group(1) == 'epoch', path))
    return [path for _, _, path in sorted(found)]


def _check_work_dir(cfg: Config, start_over: bool, move: bool) -> None:
    """Refuse a fresh training into a work dir that holds checkpoints of an
    earlier one (it would overwrite them epoch by epoch and leave a mix);
    with ``start_over`` move them (and ``last_checkpoint``) into
    ``WORK_DIR/earlier_<time>/`` instead, when ``move``."""
    if cfg.get('resume', False):
        if cfg.get('load_from') is None:
            print_log(
                f'--resume: no checkpoint in {cfg.work_dir} yet, training '
                'starts from scratch',
                logger='current',
            )
        return
    existing = work_dir_checkpoints(cfg.work_dir)
    if not existing:
        return
    if not start_over:
        names = [osp.basename(p) for p in existing]
        shown = names[0] if len(names) == 1 else f'{names[0]} .. {names[-1]}'
        raise EcaMmdetError(
            f'work dir {cfg.work_dir} holds {len(existing)} checkpoint(s) of '
            f'an earlier training ({shown}) that this one would overwrite: '
            'continue it with --resume, or pass --start-over to train anew '
            '(they are moved into an earlier_<time>/ folder), or another '
            '--work-dir'
        )
    if not move:
        return
    aside = osp.join(
        cfg.work_dir, time.strftime('earlier_%Y%m%d_%H%M%S', time.localtime())
    )
    os.makedirs(aside, exist_ok=True)
    pointer = osp.join(cfg.work_dir, 'last_checkpoint')
    for path in existing + ([pointer] if osp.isfile(pointer) else []):
        os.replace(path, osp.join(aside, osp.basename(path)))
    print_log(
        f'--start-over: moved the {len(existing)} checkpoint(s) of the '
        f'earlier training into {aside}',
        logger='current',
    )


def last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` continues from: the file
    ``WORK_DIR/last_checkpoint`` names, if it lies in ``work_dir``; else the
    file of that name in ``work_dir`` (a copied or moved work dir, whose
    ``last_checkpoint`` still names the original); else the newest
    ``epoch_N.pth`` / ``iter_N.pth`` (``last_checkpoint`` deleted, or the
    checkpoints copied in); None if there is none."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    named = None
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip() or None
    if named:
        real_dir = osp.realpath(work_dir)
        if osp.dirname(osp.realpath(named)) == real_dir and osp.isfile(named):
            return named
        local = osp.join(work_dir, osp.basename(named))
        if osp.isfile(local):
            return local
    existing = work_dir_checkpoints(work_dir)
    return existing[-1] if existing else None


def check_load_from_fits(runner, cfg: Config, partial: bool) -> None:
    """Refuse a ``load_from`` (without resume) whose weights do not fit the
    model exactly, unless ``partial`` (``--partial-load``) allows it:
    mmengine loads it non-strictly, lists the misfits in the log and trains
    the misfit layers from their initial values.

    Raises:
        CheckpointMismatchError: naming the checkpoint and the first
            mismatched keys and shapes.
    """
    path = cfg.get('load_from', None)
    if not path or cfg.get('resume', False) or partial:
        return
    model = (
        runner.model.module if is_model_wrapper(runner.model) else runner.model
    )
    load_fitting_checkpoint(
        model,
        path,
        f'the model of {cfg.filename or "the config"}',
        what='load_from: checkpoint',
        fix='pass --partial-load (or set partial_load = True in the '
        'config) to load the weights that fit and train the others from '
        'their initial values',
    )


# Optimizer states of torch's optimizers that have the shape of their
# parameter (the "step" counters and ASGD's eta/mu are scalars).
_ELEMENTWISE_STATES = (
    'momentum_buffer',
    'exp_avg',
    'exp_avg_sq',
    'max_exp_avg_sq',
    'exp_inf',
    'square_avg',
    'grad_avg',
    'acc_delta',
    'sum',
    'prev',
    'step_size',
    'ax',
)


def _optimizer_mismatch(
    optimizer: torch.optim.Optimizer,
    saved: dict,
    names: Dict[int, str],
    limit: int = 3,
) -> Optional[str]:
    """``None`` if the saved optimizer state fits ``optimizer``'s
    parameters, else what does not: group or parameter counts, or states of
    another shape than their parameter (which torch does not check when
    loading, and which a fused kernel would read and write out of bounds)."""
    groups = optimizer.param_groups
    saved_groups = saved.get('param_groups', [])
    if len(groups) != len(saved_groups):
        return (
            f'{len(saved_groups)} parameter group(s) in the checkpoint vs '
            f'{len(groups)} in the optimizer'
        )
    states = saved.get('state', {})
    wrong = []
    for i, (group, saved_group) in enumerate(zip(groups, saved_groups)):
        if len(group['params']) != len(saved_group['params']):
            return (
                f'parameter group {i}: {len(saved_group["params"])} '
                f'parameters in the checkpoint vs {len(group["params"])}'
                ' in the optimizer'
            )
        for param, index in zip(group['params'], saved_group['params']):
            for key, value in states.get(index, {}).items():
                if (
                    key in _ELEMENTWISE_STATES
                    and torch.is_tensor(value)
                    and value.shape != param.shape
                ):
                    wrong.append(
                        f'{names.get(id(param), "?")} {key}: '
                        f'checkpoint {tuple(value.shape)} vs model '
                        f'{tuple(param.shape)}'
                    )
                    break
    if not wrong:
        return None
    more = f' (+{len(wrong) - limit} more)' if len(wrong) > limit else ''
    return (
        f'optimizer state shape mismatch {len(wrong)}: '
        + '; '.join(wrong[:limit])
        + more
    )


def check_resume_fits(runner, cfg: Config) -> Optional[str]:
    """Refuse a ``--resume`` whose checkpoint does not fit the model or its
    optimizer, before training starts.

    mmengine resumes non-strictly: weights of another shape are left at
    their initial values (only a warning in the log) and the optimizer state
    is loaded without any shape check, so the run trains a half-random model
    on and, with a fused optimizer (``fused=True``), the native kernel
    corrupts the heap ("double free or corruption"). Builds the runner's
    optim wrapper early (``runner.train()`` keeps a built one).

    Returns:
        str or None: The checkpoint resumed from (None: no resume, or an
        auto-resume without checkpoint).

    Raises:
        CheckpointMismatchError: naming the checkpoint and the first
            mismatched keys and shapes.
    """
    if not cfg.get('resume', False):
        return None
    path = cfg.get('load_from', None) or last_checkpoint(cfg.work_dir)
    if path is None:
        return None
    model = (
        runner.model.module if is_model_wrapper(runner.model) else runner.model
    )
    fix = (
        'resume with the config it was trained with, or start a new '
        'work dir (load_from=CHECKPOINT with --partial-load and without '
        '--resume loads the fitting weights only)'
    )
    checkpoint = load_fitting_checkpoint(
        model,
        path,
        f'the model of {cfg.filename or "the config"}',
        what='--resume: checkpoint',
        fix=fix,
    ).checkpoint
    saved = (
        checkpoint.get('optimizer') if isinstance(checkpoint, dict) else None
    )
    if not saved:
        return path
    from mmengine.optim import OptimWrapper

    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    if isinstance(runner.optim_wrapper, OptimWrapper):
        wrappers = {'': (runner.optim_wrapper, saved)}
    else:  # OptimWrapperDict: one saved state per name
        wrappers = {
            f'{name}: ': (w, saved.get(name, {}))
            for name, w in runner.optim_wrapper.items()
        }
    for label, (wrapper, state) in wrappers.items():
        problem = _optimizer_mismatch(wrapper.optimizer, state, names)
        if problem:
            raise CheckpointMismatchError(
                f'--resume: the optimizer state in {path} does not fit the '
                f'optimizer of {cfg.filename or "the config"}: {label}'
                f'{problem}; {fix}'
            )
    return path


def _interrupted(runner, cfg: Config) -> Interrupted:
    """The one line after Ctrl-C: where training stopped, and the last
    complete checkpoint (writes are atomic: never a truncated one)."""
    where = f'in epoch {runner.epoch + 1}'
    path = last_checkpoint(cfg.work_dir)
    if path is None:
        return Interrupted(
            f'training interrupted (SIGINT) {where}; no checkpoint was '
            f'written yet in {cfg.work_dir}: train again from the start'
        )
    return Interrupted(
        f'training interrupted (SIGINT) {where}; the last complete '
        f'checkpoint is {path}: continue with tools/train.py '
        f'{cfg.filename or "CONFIG"} --work-dir {cfg.work_dir} --resume'
    )


class StopOnSigintHook(Hook):
    """Turn the first Ctrl-C (SIGINT) into a clean stop at the end of the
    current iteration, with :class:`Interrupted` naming the last complete
    checkpoint; a second Ctrl-C stops at once (``KeyboardInterrupt``).

    A ``KeyboardInterrupt`` raised at any bytecode could land in code that
    swallows or rewraps it (mmengine's config formatting during a checkpoint
    save turns it into a ``SyntaxError`` traceback); deferring it to a hook
    lets the iteration, and any checkpoint save, finish. Installed by
    :meth:`watch` around ``runner.train()`` (main thread only).
    """

    priority = 'LOWEST'  # after the checkpoint hook of the same iteration

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.requested = False

    def _on_sigint(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    @contextlib.contextmanager
    def watch(self):
        """Handle SIGINT as above inside the ``with`` block."""
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def _check(self, runner, *args, **kwargs) -> None:
        if self.requested:
            raise _interrupted(runner, self.cfg)

    before_train = after_train_iter = after_val_iter = _check


def _train(args: argparse.Namespace) -> int:
    from mmdet.utils import setup_cache_size_limit_of_dynamo

    setup_cache_size_limit_of_dynamo()

    cfg = build_train_config(args)
    data_warnings = []
    preflight_check(
        cfg,
        mode='train',
        warnings=data_warnings,
        read_annotations=get_launch_rank(args.launcher) == 0,
    )
    rank = get_launch_rank(args.launcher)
    start_over = getattr(args, 'start_over', False)
    if args.check:
        if rank == 0:
            lock_work_dir(cfg.work_dir, hold=False)
        _check_work_dir(cfg, start_over, move=False)
        log_data_warnings(data_warnings)
        print(f'ok: {args.config} is ready to train (work dir {cfg.work_dir})')
        return 0
    if rank == 0:  # held until the process ends
        lock_work_dir(cfg.work_dir)
        _check_work_dir(cfg, start_over, move=True)
    setup_distributed(cfg, args.launcher)
    runner = build_runner(cfg, args.config)
    log_data_warnings(data_warnings, runner)
    check_resume_fits(runner, cfg)
    check_load_from_fits(
        runner,
        cfg,
        getattr(args, 'partial_load', False)
        or bool(cfg.get('partial_load', False)),
    )
    stop = StopOnSigintHook(cfg)
    runner.register_hook(stop)
    try:
        with stop.watch():
            runner.train()
    except KeyboardInterrupt:  # a second Ctrl-C
        raise _interrupted(runner, cfg) from None
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``tools/train.py``; returns the exit status."""
    return run_cli(_train, build_parser(), argv)
