"""``tools/train.py``: train a detector from a config with mmengine's Runner.

Compared with mmdet's own tool it checks the data and checkpoints before
starting (:func:`~eca_mmdet.engine.preflight_check`), runs distributed on CPU
with gloo (:func:`~eca_mmdet.engine.setup_distributed`), loads checkpoints
with ``weights_only=True`` (``--resume`` works under torch >= 2.6), and
reports bad input in one line with exit status 1.
"""
import argparse
import glob
import os.path as osp
from typing import Optional, Sequence

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from ..engine import EcaMmdetError, preflight_check, setup_distributed
from .common import (CliArgumentParser, ConfigError, add_common_args,
                     add_hooks, build_runner, load_config, log_data_warnings,
                     resolve_work_dir, run_cli)

__all__ = ['SAFETY_HOOKS', 'build_parser', 'build_train_config', 'main']

# Added to every run whose config does not list them (the project's configs
# do, so mmdet's own tools/train.py keeps them too).
SAFETY_HOOKS = ('NonFiniteLossHook', 'EpochSeedHook', 'SafeImageLoadingHook')


def build_parser() -> argparse.ArgumentParser:
    parser = CliArgumentParser(
        prog='tools/train.py', description='Train a detector.')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--work-dir',
        help='where logs and checkpoints go (default: the config\'s '
        'work_dir, else work_dirs/<config name>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        metavar='CHECKPOINT',
        help='resume training (optimizer, schedulers, epoch) from '
        'CHECKPOINT; without a value, from the latest checkpoint of the '
        'work dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='automatic mixed precision (needs a CUDA GPU)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the total batch size over the '
        'config\'s auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--lr-scale',
        type=float,
        metavar='F',
        help='multiply the learning rate by F, also after --resume (which '
        'restores the saved rate), e.g. 0.1 after a non-finite loss')
    add_common_args(parser)
    return parser


def build_train_config(args: argparse.Namespace) -> Config:
    """The config for ``args``: file + ``--cfg-options`` + the CLI flags."""
    cfg = load_config(args.config, args.cfg_options)
    resolve_work_dir(cfg, args.config, args.work_dir)

    if args.amp:
        if not torch.cuda.is_available():
            raise EcaMmdetError(
                '--amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper does not '
                'support the CPU); run without --amp here')
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
                '--cfg-options auto_scale_lr.base_batch_size=N')
        scale['enable'] = True

    add_hooks(cfg, SAFETY_HOOKS)
    if args.lr_scale is not None:
        if not args.lr_scale > 0:
            raise ConfigError(f'--lr-scale must be > 0, got {args.lr_scale}')
        cfg.custom_hooks.append(
            ConfigDict(type='ScaleLrHook', factor=args.lr_scale))

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def _note_work_dir(cfg: Config, rank: int) -> None:
    """Say what happens to checkpoints already in the work dir."""
    if rank != 0:
        return
    existing = sorted(glob.glob(osp.join(cfg.work_dir, '*.pth')))
    if not existing:
        if cfg.get('resume', False) and cfg.get('load_from') is None:
            print_log(
                f'--resume: no checkpoint in {cfg.work_dir} yet, training '
                'starts from scratch', logger='current')
        return
    if not cfg.get('resume', False):
        print_log(
            f'{cfg.work_dir} already holds {len(existing)} checkpoint(s); '
            'they will be overwritten as epochs with the same number are '
            'saved. Use --resume to continue from the latest one instead.',
            logger='current', level=30)


def _train(args: argparse.Namespace) -> int:
    from ..engine import get_launch_rank
    from mmdet.utils import setup_cache_size_limit_of_dynamo
    setup_cache_size_limit_of_dynamo()

    cfg = build_train_config(args)
    data_warnings = []
    preflight_check(cfg, mode='train',
                    warnings=data_warnings,
                    read_annotations=get_launch_rank(args.launcher) == 0)
    if args.check:
        log_data_warnings(data_warnings)
        print(f'ok: {args.config} is ready to train (work dir '
              f'{cfg.work_dir})')
        return 0
    _note_work_dir(cfg, get_launch_rank(args.launcher))
    setup_distributed(cfg, args.launcher)
    runner = build_runner(cfg, args.config)
    log_data_warnings(data_warnings, runner)
    runner.train()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``tools/train.py``; returns the exit status."""
    return run_cli(_train, build_parser(), argv)
