"""Shared fixtures of the visualization tests: a tiny shapes dataset and one
tiny Mask R-CNN trained for a few epochs with ``ProgressGifHook`` on,
produced once per pytest session (memoised here, so every test module that
asks gets the same work dir)."""

import copy
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
SHAPES_CONFIG = REPO / 'configs' / 'shapes' / 'mask_rcnn_ecaresnet18_shapes.py'
NUM_TRAIN, NUM_VAL, IMG_SIZE = 8, 3, 64
MAX_EPOCHS = 3
GIF_IMAGES = 2
GIF_SIZE = 96
GIF_SCORE_THR = 0.05

_CACHE: Dict[str, object] = {}


def make_data(root: Path) -> Path:
    from eca_mmdet.datasets import make_shapes_dataset

    make_shapes_dataset(
        root, num_train=NUM_TRAIN, num_val=NUM_VAL, seed=0, size=IMG_SIZE
    )
    return root


def _resize_scale(pipeline: List[dict], scale) -> None:
    for t in pipeline:
        if t.get('type') == 'Resize':
            t['scale'] = scale


def tiny_config(
    data_root: Path,
    work_dir: Path,
    max_epochs: int = MAX_EPOCHS,
    custom_hooks: Optional[Sequence[dict]] = None,
):
    """The shapes config shrunk for 2 CPU cores: 64 px, batch 4, no workers,
    constant lr (so every epoch moves the weights), validation each epoch."""
    from mmengine.config import Config

    import eca_mmdet  # noqa: F401
    import eca_mmdet.hooks  # noqa: F401

    cfg = Config.fromfile(str(SHAPES_CONFIG))
    root = str(data_root).rstrip('/') + '/'
    cfg.work_dir = str(work_dir)
    for key, split in (
        ('train_dataloader', 'train'),
        ('val_dataloader', 'val'),
        ('test_dataloader', 'val'),
    ):
        loader = cfg[key]
        loader.batch_size = 4
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.data_root = root
        loader.dataset.ann_file = f'annotations/instances_{split}.json'
        loader.dataset.data_prefix = dict(img=f'{split}/')
        _resize_scale(loader.dataset.pipeline, (IMG_SIZE, IMG_SIZE))
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key].ann_file = root + 'annotations/instances_val.json'
    cfg.model.test_cfg.rpn.nms_pre = 100
    cfg.model.test_cfg.rpn.max_per_img = 50
    cfg.model.test_cfg.rcnn.max_per_img = 10
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # a barely trained model
    cfg.model.train_cfg.rpn_proposal.nms_pre = 200
    cfg.model.train_cfg.rpn_proposal.max_per_img = 50
    cfg.model.train_cfg.rcnn.sampler.num = 64
    cfg.train_cfg = dict(
        type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1
    )
    cfg.param_scheduler = []
    cfg.optim_wrapper.optimizer.lr = 2e-3  # AdamW, as the shapes config
    cfg.auto_scale_lr = dict(enable=False, base_batch_size=4)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=1, max_keep_ckpts=-1
    )
    cfg.custom_hooks = list(custom_hooks or [])
    cfg.randomness = dict(seed=0)
    cfg.log_level = 'WARNING'
    return cfg


def train(cfg, extra_hooks: Sequence = ()):
    """Train ``cfg`` in this process with mmengine's Runner; returns it."""
    from mmengine.runner import Runner

    runner = Runner.from_cfg(copy.deepcopy(cfg))
    for hook in extra_hooks:
        runner.register_hook(hook)
    runner.train()
    return runner


def trained_workdir(tmp_path_factory) -> Dict[str, object]:
    """Train the tiny model once per session; returns paths and timings."""
    if 'trained' in _CACHE:
        return _CACHE['trained']
    base = tmp_path_factory.mktemp('vis_trained')
    data_root = make_data(base / 'data')
    work_dir = base / 'work'
    hook = dict(
        type='ProgressGifHook',
        num_images=GIF_IMAGES,
        size=GIF_SIZE,
        score_thr=GIF_SCORE_THR,
    )
    cfg = tiny_config(data_root, work_dir, custom_hooks=[hook])
    config_path = base / 'tiny_config.py'
    cfg.dump(str(config_path))
    start = time.perf_counter()
    runner = train(cfg)
    gif_hook = [
        h for h in runner.hooks if type(h).__name__ == 'ProgressGifHook'
    ][0]
    info = dict(
        base=base,
        data_root=data_root,
        work_dir=work_dir,
        config=config_path,
        cfg=cfg,
        classes=tuple(cfg.metainfo['classes']),
        train_seconds=time.perf_counter() - start,
        hook_timings=list(gif_hook.timings),
        checkpoints=sorted(work_dir.glob('epoch_*.pth')),
    )
    _CACHE['trained'] = info
    return info


def tool_env() -> Dict[str, str]:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [str(REPO)] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else [])
    )
    env['OMP_NUM_THREADS'] = '1'
    env.pop('ECA_MMDET_DEBUG', None)
    return env


def run(
    script: str, *args, cwd: Optional[Path] = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run ``REPO/script`` with this Python."""
    cmd = [sys.executable, str(REPO / script)] + [str(a) for a in args]
    return subprocess.run(
        cmd,
        cwd=str(cwd or REPO),
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def explain(proc: subprocess.CompletedProcess) -> str:
    return (
        f'exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}'
        f'\n--- stderr ---\n{proc.stderr[-4000:]}'
    )
