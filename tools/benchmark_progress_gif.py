#!/usr/bin/env python
"""What ProgressGifHook costs per call, with and without its cap on the
drawn instances, and as a share of a training epoch.

    python tools/benchmark_progress_gif.py CONFIG [--checkpoint CKPT] \
        [--rounds 5] [--epoch-iters N] [--cfg-options KEY=VALUE ...]

Without ``--checkpoint`` the detector has its initial (random) weights: an
untrained model. In one process, after a warm-up call of each, it
alternates the hook with ``max_instances=None`` (every detection above
``score_thr`` drawn, the hook before the cap) and with its defaults, each
call the whole ``after_val_epoch`` (prediction on the hook's images, frame,
PNG, GIF), and reports the fastest call of each (on shared cores
interference only adds time) next to the slowest. The epoch's training time
is estimated as ``--epoch-iters`` (default: the length of the config's
train dataloader) times the fastest of a few training steps (mmengine's
``train_step`` with the config's optimizer on a loaded batch: data loading
and logging left out, so the epoch is a lower bound and its shares upper
bounds). The
last lines say what produced the figures: CPU, threads, torch, commit, UTC
date and the command line.
"""

import argparse
import copy
import math
import os.path as osp
import sys
import tempfile
import time
from types import SimpleNamespace

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmdet.registry import DATASETS  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from eca_mmdet.apis import load_detector  # noqa: E402
from eca_mmdet.apis.common import (  # noqa: E402
    CfgOptionsAction,
    CliArgumentParser,
    load_config,
    run_cli,
)
from eca_mmdet.benchmark import run_environment  # noqa: E402
from eca_mmdet.hooks import ProgressGifHook  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = CliArgumentParser(
        prog='tools/benchmark_progress_gif.py',
        description='Seconds per ProgressGifHook call with and without '
        'its cap on the drawn instances, and their share of an epoch.',
    )
    p.add_argument('config')
    p.add_argument(
        '--checkpoint', help='weights (default: random, an untrained model)'
    )
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--train-steps', type=int, default=3)
    p.add_argument(
        '--epoch-iters',
        type=int,
        help='training iterations per epoch (default: the length of the '
        "config's train dataloader)",
    )
    p.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction)
    return p


def _train_step_seconds(model, cfg, steps: int) -> tuple:
    """(fastest seconds of one training step of the config, iterations per
    epoch of its train dataloader). A step is mmengine's ``train_step``
    (preprocessing, forward, backward, the config's optimizer step) on a
    batch already loaded; the weights are restored afterwards."""
    loader = Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader))
    optim_wrapper = build_optim_wrapper(
        model, copy.deepcopy(cfg.optim_wrapper)
    )
    saved = copy.deepcopy(model.state_dict())
    model.train()
    times = []
    batches = iter(loader)
    for _ in range(steps + 1):  # the first one warms up
        data = next(batches)
        start = time.perf_counter()
        model.train_step(data, optim_wrapper)
        times.append(time.perf_counter() - start)
    model.load_state_dict(saved)
    model.eval()
    return min(times[1:]), len(loader)


def _detections(model, hook, runner) -> list:
    """Detections per image above the hook's score_thr, uncapped."""
    hook._prepare(runner)
    _, batch = hook._samples
    outputs = hook._predict(model, batch)
    return [
        int((o.pred_instances.scores > hook.score_thr).sum()) for o in outputs
    ]


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.cfg_options)
    torch.manual_seed(0)
    model = load_detector(cfg, args.checkpoint)
    dataset = DATASETS.build(copy.deepcopy(cfg.val_dataloader.dataset))
    logger = MMLogger.get_instance(
        'benchmark_progress_gif', log_level='WARNING'
    )
    with tempfile.TemporaryDirectory() as tmp:
        runner = SimpleNamespace(
            val_loop=SimpleNamespace(
                dataloader=SimpleNamespace(dataset=dataset)
            ),
            model=model,
            epoch=1,
            work_dir=tmp,
            visualizer=SimpleNamespace(add_image=lambda *a, **k: None),
            logger=logger,
        )
        hooks = {
            'uncapped': ProgressGifHook(
                max_instances=None, out_dir=osp.join(tmp, 'uncapped')
            ),
            'capped': ProgressGifHook(out_dir=osp.join(tmp, 'capped')),
        }
        seconds = {name: [] for name in hooks}
        for hook in hooks.values():
            hook.before_train(runner)
            hook.after_val_epoch(runner, {})  # warm-up
        for r in range(args.rounds):
            order = list(hooks) if r % 2 == 0 else list(hooks)[::-1]
            for name in order:
                start = time.perf_counter()
                hooks[name].after_val_epoch(runner, {})
                seconds[name].append(time.perf_counter() - start)
        found = _detections(model, hooks['uncapped'], runner)
    step, loader_iters = _train_step_seconds(model, cfg, args.train_steps)
    iters = args.epoch_iters or loader_iters
    epoch = step * iters
    capped = hooks['capped']
    weights = args.checkpoint or 'random weights'
    print(
        f'{args.config} ({weights}): {len(found)} images, detections above '
        'score_thr '
        f'{capped.score_thr:g} per image: {found}'
    )
    print(
        f'training step {step:.2f} s (fastest of {args.train_steps}) x '
        f'{iters} iterations = epoch of {epoch:.0f} s'
    )
    print('hook                 fastest s  slowest s  % of epoch')
    for name, values in seconds.items():
        label = (
            'max_instances=None'
            if name == 'uncapped'
            else f'max_instances={capped.max_instances}'
        )
        print(
            f'{label:20} {min(values):9.2f}  {max(values):9.2f}  '
            f'{100.0 * min(values) / epoch:10.2f}'
        )
    env = run_environment(
        torch.device('cpu'),
        repo=osp.dirname(osp.dirname(osp.abspath(__file__))),
    )
    env['threads'] = torch.get_num_threads()
    for key in (
        'cpu',
        'logical_cores',
        'threads',
        'torch',
        'commit',
        'date',
        'command',
    ):
        if key in env:
            print(f'{key}: {env[key]}')
    return 0 if all(math.isfinite(min(v)) for v in seconds.values()) else 1


if __name__ == '__main__':
    sys.exit(run_cli(main, build_parser()))
