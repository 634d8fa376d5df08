"""Helpers of the tests: the tiny shapes dataset, the tiny Mask R-CNN
config, subprocess runners for the tools and scripts, and in-process runs of
a config. The shared session fixtures built from them are in conftest.py."""

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config
from mmengine.runner import Runner

from eca_mmdet.datasets import make_shapes_dataset

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / 'tools'
SHAPES_CONFIG = REPO / 'configs' / 'shapes' / 'mask_rcnn_ecaresnet18_shapes.py'
CLASSES = ('circle', 'square', 'triangle', 'star')
NUM_TRAIN, NUM_VAL, IMG_SIZE = 8, 4, 64
BATCH = 2
TIMEOUT = 900
# the session's training (conftest.trained_run): epochs and its
# ProgressGifHook (2 val images per frame, 96 px cells)
TRAINED_EPOCHS = 2
GIF_IMAGES, GIF_SIZE, GIF_SCORE_THR = 2, 96, 0.05

# A custom hook the distributed test adds: every rank saves its parameters.
DUMP_HOOK_MODULE = '''
import os.path as osp

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DumpRankParamsHook(Hook):
    """Save this rank's parameters and world size after training."""

    def after_run(self, runner):
        model = runner.model
        wrapper = type(model).__name__
        if is_model_wrapper(model):
            model = model.module
        params = {k: v.detach().cpu().clone()
                  for k, v in model.named_parameters()}
        torch.save(dict(params=params, world_size=runner.world_size,
                        rank=runner.rank, wrapper=wrapper),
                   osp.join(runner.work_dir, f'rank{runner.rank}_params.pth'))
'''


def make_dataset(out_dir: Path, seed: int = 0) -> Path:
    """Generate the tiny shapes set (8 train / 4 val, 64 px) in ``out_dir``."""
    make_shapes_dataset(
        out_dir, num_train=NUM_TRAIN, num_val=NUM_VAL, seed=seed, size=IMG_SIZE
    )
    return out_dir


def write_config(
    path: Path,
    data_root: Path,
    max_epochs: int = 2,
    extra_imports: Sequence[str] = (),
    custom_hooks: Optional[List[dict]] = None,
    inherit_hooks: bool = False,
    validate: bool = False,
) -> Path:
    """Write a tiny Mask R-CNN config (quarter-width ECA-ResNet-18, 32-channel
    FPN, slim heads, 64 px images, batch 2, no workers) on the shapes set.

    It builds on the project's shapes config when present, else directly on
    mmdet's Mask R-CNN base; every size that matters is set here. Like the
    project's configs it opts in to ``eca_mmdet.stack_fixes``.
    ``custom_hooks`` replaces the base config's hooks unless
    ``inherit_hooks`` keeps them (then ``custom_hooks`` must be None).
    ``validate`` validates after every epoch (else never while training).
    """
    base = (
        SHAPES_CONFIG
        if SHAPES_CONFIG.is_file()
        else 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
    )
    imports = ['eca_mmdet', 'eca_mmdet.stack_fixes', *extra_imports]
    assert not (inherit_hooks and custom_hooks)
    hooks = '' if inherit_hooks else f'custom_hooks = {custom_hooks or []!r}'
    root = str(data_root).rstrip('/') + '/'
    val_begin = 1 if validate else 1000
    text = f"""
_base_ = {str(base)!r}
custom_imports = dict(imports={imports!r}, allow_failed_imports=False)
data_root = {root!r}
metainfo = dict(classes={CLASSES!r})
model = dict(
    # quarter width (16-32-64-128): small checkpoints, fast steps
    backbone=dict(type='ECAResNet', depth=18, eca_k_size=None,
                  stem_channels=16, base_channels=16,
                  frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64,
                       num_classes={len(CLASSES)}),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(num_convs=1, in_channels=32, conv_out_channels=32,
                       num_classes={len(CLASSES)})),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=200, max_per_img=100),
        rcnn=dict(sampler=dict(num=64))),
    # score_thr=0: even a barely trained model writes detections
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100),
                  rcnn=dict(score_thr=0.0, max_per_img=20)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=({IMG_SIZE}, {IMG_SIZE}), keep_ratio=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({IMG_SIZE}, {IMG_SIZE}), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(
    batch_size={BATCH}, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=4),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size={BATCH}, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), test_mode=True,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', metric=['bbox', 'segm'],
                     ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs={max_epochs},
                 val_interval=1, val_begin={val_begin})
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False,
                        begin=0, end=4)]
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.005, momentum=0.9,
                                    weight_decay=1e-4),
                     clip_grad=dict(max_norm=10))
auto_scale_lr = dict(enable=False, base_batch_size={BATCH})
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=-1))
{hooks}
randomness = dict(seed=0)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
"""
    path.write_text(text)
    return path


def tool_env(extra_pythonpath: Sequence[Path] = ()) -> Dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO), *map(str, extra_pythonpath)]
    if env.get('PYTHONPATH'):
        paths.append(env['PYTHONPATH'])
    env['PYTHONPATH'] = os.pathsep.join(paths)
    env.setdefault('OMP_NUM_THREADS', '1')
    env['PYTHON'] = sys.executable  # for tools/dist_*.sh
    env.pop('ECA_MMDET_DEBUG', None)
    for var in (
        'RANK',
        'WORLD_SIZE',
        'LOCAL_RANK',
        'MASTER_ADDR',
        'MASTER_PORT',
    ):
        env.pop(var, None)
    return env


def run_tool(
    args: Sequence[str],
    cwd: Path,
    env: Optional[Dict[str, str]] = None,
    timeout: int = TIMEOUT,
) -> subprocess.CompletedProcess:
    """Run ``tools/<args[0]>`` (a .py with this Python, or a .sh)."""
    tool = TOOLS / args[0]
    cmd = (
        [str(tool)] if tool.suffix == '.sh' else [sys.executable, str(tool)]
    ) + [str(a) for a in args[1:]]
    return subprocess.run(
        cmd,
        cwd=str(cwd),
        env=env or tool_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_script(
    script: str, *args, cwd: Optional[Path] = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run ``REPO/script`` (e.g. ``demo/image_demo.py``) with this Python."""
    cmd = [sys.executable, str(REPO / script)] + [str(a) for a in args]
    return subprocess.run(
        cmd,
        cwd=str(cwd or REPO),
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_config(config: Path, work_dir: Path, **changes) -> Config:
    """``config`` loaded for an in-process run in ``work_dir``: top-level
    keys replaced by ``changes``, warnings only in the log."""
    cfg = Config.fromfile(str(config))
    cfg.work_dir = str(work_dir)
    cfg.log_level = 'WARNING'
    for key, value in changes.items():
        cfg[key] = value
    return cfg


def train_in_process(cfg: Config, extra_hooks: Sequence = ()) -> Runner:
    """Train ``cfg`` in this process with mmengine's Runner; returns it."""
    runner = Runner.from_cfg(copy.deepcopy(cfg))
    for hook in extra_hooks:
        runner.register_hook(hook)
    runner.train()
    return runner


def explain(proc: subprocess.CompletedProcess) -> str:
    return (
        f'exit {proc.returncode}\n--- stdout (tail) ---\n'
        f'{proc.stdout[-6000:]}\n--- stderr (tail) ---\n'
        f'{proc.stderr[-6000:]}'
    )


# mmdet's own inference APIs on a saved config and checkpoint, in a fresh
# process: init_detector + inference_detector (path, then BGR array) and
# DetInferencer; prints a JSON summary
STOCK_APIS = r"""
import json, sys
import numpy as np
from PIL import Image
from mmdet.apis import DetInferencer, inference_detector, init_detector
config, ckpt, img = sys.argv[1:4]
out = {}
model = init_detector(config, ckpt, device='cpu')
out['classes'] = list(model.dataset_meta['classes'])
by_path = inference_detector(model, img)
array = np.array(Image.open(img).convert('RGB'))[..., ::-1].copy()  # BGR
by_array = inference_detector(model, array)
out['path_n'] = len(by_path.pred_instances)
out['array_n'] = len(by_array.pred_instances)
out['same_boxes'] = bool(np.allclose(
    by_path.pred_instances.bboxes.numpy(),
    by_array.pred_instances.bboxes.numpy(), atol=1e-3))
inferencer = DetInferencer(model=config, weights=ckpt, device='cpu',
                           show_progress=False)
res = inferencer(img, return_vis=False, no_save_pred=True)
pred = res['predictions'][0]
out['inferencer_n'] = len(pred['labels'])
out['inferencer_boxes'] = bool(np.allclose(
    np.array(pred['bboxes']).reshape(-1, 4),
    by_path.pred_instances.bboxes.numpy(), atol=1e-2))
print(json.dumps(out))
"""


def run_stock_apis(config: Path, ckpt: Path, img: Path, cwd: Path) -> dict:
    """Run :data:`STOCK_APIS` with the installed package, as a user has it
    (no PYTHONPATH into the checkout): nothing of ours is imported but what
    the config's ``custom_imports`` name."""
    env = tool_env()
    env.pop('PYTHONPATH')
    proc = subprocess.run(
        [sys.executable, '-c', STOCK_APIS, str(config), str(ckpt), str(img)],
        cwd=str(cwd),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, explain(proc)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)
