"""``ProgressGifHook``: a GIF of the predictions on a few val images, one frame
per validation epoch.

After each validation during training (``after_val_epoch``, main process
only) the hook draws its fixed set of val images (the first ``num_images``
of the val dataset, or ``indices``; chosen once) with the current weights,
saves the frame as ``WORK_DIR/progress_frames/epoch_XXX.png`` and rewrites
``WORK_DIR/progress.gif`` from all frames (written atomically), so an
interrupted run still has the GIF of its completed epochs. Each frame also
goes to the runner's visualizer as image ``progress`` (step = epoch), so with
TensorBoard or W&B in ``vis_backends`` the frames are there too. Each frame's
caption is the epoch and that validation's ``coco/bbox_mAP`` /
``coco/segm_mAP``. Box-only detectors (RetinaNet, Faster R-CNN) work too.

Enabled in the configs with::

    custom_hooks = [dict(type='ProgressGifHook')]

Options: ``enabled=True``, ``num_images=4``, ``indices=None`` (explicit
dataset indices instead of the first ``num_images``), ``score_thr=0.3``
(draw predictions scoring above it), ``max_instances=10`` (draw at most the
10 highest-scoring predictions per image; ``None``: all), ``fps=2``,
``size=256`` (cell size of each image in px), ``cols=None``,
``out_dir=None`` (default: the work dir). A cell that shows no prediction
(nothing scores above ``score_thr``, as with an untrained model's uniform
class scores) or not all of them says so at its bottom: ``nothing >
0.30``, ``top 10 (more > 0.30)``. Turn the hook off with one option, without
touching the config file::

    python tools/train.py CONFIG --cfg-options custom_hooks.0.enabled=False

or ``custom_hooks = [dict(type='ProgressGifHook', enabled=False)]``.

Cost: the model runs once on ``num_images`` images in eval mode under
``torch.no_grad()`` (train mode is restored afterwards), plus drawing and
GIF writing. While it runs, the detector's heads keep only what a frame can
draw: ``score_thr`` and ``max_instances + 1`` detections per image (the one
more tells whether the cell shows all), so the mask head and the mask
pasting work on at most 11 instances per image instead of ``max_per_img``
(100 in mmdet's Mask R-CNN, all of them above ``score_thr`` for a barely
trained model with few classes). The hook logs its seconds per call and
the share of the epoch's training time (also kept in
:attr:`ProgressGifHook.timings`). A failure while drawing is logged as a
warning and never stops training.
"""

import copy
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmdet.registry import HOOKS
from mmengine.dataset import pseudo_collate
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..visualization import (
    MAX_INSTANCES,
    StableColorDetVisualizer,
    VisualizationError,
    check_score_thr,
    compose_frame,
    format_caption,
    frame_files,
    read_image,
    save_image,
    write_gif,
)

__all__ = ['ProgressGifHook']


@HOOKS.register_module()
class ProgressGifHook(Hook):
    """Render a fixed set of val images after each validation epoch and keep
    ``progress.gif`` up to date. See the module docstring."""

    priority = 'LOW'  # after the logger and checkpoint hooks have their say

    def __init__(
        self,
        enabled: bool = True,
        num_images: int = 4,
        indices: Optional[Sequence[int]] = None,
        score_thr: float = 0.3,
        max_instances: Optional[int] = MAX_INSTANCES,
        fps: float = 2.0,
        size: int = 256,
        cols: Optional[int] = None,
        out_dir: Optional[str] = None,
        frames_dirname: str = 'progress_frames',
        gif_name: str = 'progress.gif',
    ) -> None:
        if num_images < 1 and not indices:
            raise ValueError('ProgressGifHook needs num_images >= 1')
        self.enabled = bool(enabled)
        self.num_images = int(num_images)
        self.indices = list(indices) if indices else None
        self.score_thr = check_score_thr(
            score_thr, 'ProgressGifHook.score_thr'
        )
        if max_instances is not None and int(max_instances) < 1:
            raise VisualizationError(
                'ProgressGifHook.max_instances must be >= 1 or None, got '
                f'{max_instances!r}'
            )
        self.max_instances = (
            int(max_instances) if max_instances is not None else None
        )
        self.fps = float(fps)
        self.size = int(size)
        self.cols = cols
        self.out_dir = out_dir
        self.frames_dirname = frames_dirname
        self.gif_name = gif_name
        self.timings: List[Dict[str, float]] = []
        self._samples = None  # (images, packed data) of the chosen images
        self._visualizer = None
        self._training = False
        self._epoch_start = None
        self._epoch_train_time = None

    # -- paths ---------------------------------------------------------------
    def _root(self, runner) -> str:
        return self.out_dir or runner.work_dir

    def frames_dir(self, runner) -> str:
        return osp.join(self._root(runner), self.frames_dirname)

    def gif_path(self, runner) -> str:
        return osp.join(self._root(runner), self.gif_name)

    # -- bookkeeping ---------------------------------------------------------
    def before_train(self, runner) -> None:
        self._training = True
        if not (self.enabled and is_main_process()):
            return
        # frames of epochs this run will redo (fresh start or resume) are
        # stale
        for epoch, path in frame_files(self.frames_dir(runner)):
            if epoch > runner.epoch:
                os.remove(path)

    def after_train(self, runner) -> None:
        self._training = False

    def before_train_epoch(self, runner) -> None:
        self._epoch_start = time.perf_counter()

    def after_train_epoch(self, runner) -> None:
        if self._epoch_start is not None:
            self._epoch_train_time = time.perf_counter() - self._epoch_start

    # -- the frame -----------------------------------------------------------
    def _prepare(self, runner) -> None:
        """Choose the images once and keep their pipeline output."""
        dataset = runner.val_loop.dataloader.dataset
        n = len(dataset)
        indices = self.indices or list(range(min(self.num_images, n)))
        indices = [i for i in indices if 0 <= i < n]
        if not indices:
            raise RuntimeError('the val dataset is empty')
        items = [dataset[i] for i in indices]
        images = [read_image(item['data_samples'].img_path) for item in items]
        self._samples = (images, pseudo_collate(items))
        self._visualizer = StableColorDetVisualizer(
            name=f'eca_progress_gif_{id(self)}'
        ).set_meta(dataset.metainfo)

    def _limit_heads(self, model) -> list:
        """Let the heads drop what the frame would not draw anyway.

        Detections scoring ``<= self.score_thr`` are not drawn, nor those
        beyond the ``max_instances`` highest scores of an image; filtering
        them in the head (``score_thr`` before NMS, ``max_per_img`` after
        it, both before mask prediction and pasting) gives the same drawn
        set (a low score never suppresses a higher one; the top-k after
        NMS are the highest scores) and saves most of the mask head's time
        when many detections pass, e.g. early in training. One detection
        more than drawn is kept, to tell whether a cell shows all. Returns
        what to restore.
        """
        wanted = dict(score_thr=self.score_thr)
        if self.max_instances is not None:
            wanted['max_per_img'] = self.max_instances + 1
        restore = []
        for name in ('roi_head', 'bbox_head'):
            test_cfg = getattr(getattr(model, name, None), 'test_cfg', None)
            if test_cfg is None:
                continue
            for key, value in wanted.items():
                old = test_cfg.get(key)
                if old is None:
                    continue
                # raise a lower score_thr, lower a higher max_per_img
                if (old < value) if key == 'score_thr' else (old > value):
                    restore.append((test_cfg, key, old))
                    test_cfg[key] = value
        return restore

    def _predict(self, model, batch) -> list:
        """``model``'s predictions on ``batch`` in eval mode with the heads
        limited (:meth:`_limit_heads`); its mode and test_cfg restored."""
        was_training = model.training
        model.eval()
        restore = self._limit_heads(model)
        try:
            with torch.no_grad():
                return model.test_step(copy.deepcopy(batch))
        finally:
            for test_cfg, key, value in reversed(restore):
                test_cfg[key] = value
            model.train(was_training)

    def render_frame(self, runner, metrics: Optional[dict] = None):
        """The current model's frame (a PIL image) for ``runner.epoch``."""
        if self._samples is None:
            self._prepare(runner)
        images, batch = self._samples
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        outputs = self._predict(model, batch)
        return compose_frame(
            self._visualizer,
            images,
            outputs,
            format_caption(runner.epoch, metrics),
            size=self.size,
            cols=self.cols,
            score_thr=self.score_thr,
            max_instances=self.max_instances,
        )

    def after_val_epoch(
        self, runner, metrics: Optional[Dict[str, float]] = None
    ) -> None:
        if not (self.enabled and self._training and is_main_process()):
            return
        start = time.perf_counter()
        try:
            frame = self.render_frame(runner, metrics)
            frames_dir = self.frames_dir(runner)
            save_image(
                frame, osp.join(frames_dir, f'epoch_{runner.epoch:03d}.png')
            )
            write_gif(
                [p for _, p in frame_files(frames_dir)],
                self.gif_path(runner),
                fps=self.fps,
            )
            runner.visualizer.add_image(
                'progress', np.asarray(frame), step=runner.epoch
            )
        except Exception as e:  # noqa: BLE001 - never stop the training
            runner.logger.warning(
                f'ProgressGifHook: no frame for epoch {runner.epoch}: '
                f'{type(e).__name__}: {e}'
            )
            return
        seconds = time.perf_counter() - start
        train_time = self._epoch_train_time
        self.timings.append(
            dict(
                epoch=runner.epoch,
                seconds=seconds,
                train_epoch_seconds=train_time or float('nan'),
            )
        )
        share = (
            (
                f" = {100.0 * seconds / train_time:.1f}% of the epoch's "
                f'{train_time:.1f}s training time'
            )
            if train_time
            else ''
        )
        runner.logger.info(
            f'ProgressGifHook: epoch {runner.epoch} frame + '
            f'{self.gif_name} in {seconds:.2f}s{share}'
        )
