"""``RenderPredictionsHook``: write renderings of the test loop's predictions
(``tools/test.py --show-dir DIR``).

For every test sample it writes ``DIR/<image stem>.png`` (GT | prediction
side by side when the sample has ground truth and ``draw_gt``), in the same
stable class colours as ``tools/visualize.py``, and at the end of the test
``DIR/contact_sheet.png`` with the first ``max_sheet_images`` renderings.
Names never collide: an image whose name an earlier image (same file name in
another folder) or the contact sheet has is written as
``<stem>_id<img_id>.png``, so the logged count is the number of files.
Like mmdet's ``DetVisualizationHook`` it draws on the main process only (in a
distributed test that is rank 0's share of the images).

Use::

    custom_hooks = [dict(type='RenderPredictionsHook', out_dir='DIR')]
"""
import os.path as osp
from typing import Optional, Sequence

from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from mmdet.registry import HOOKS

__all__ = ['RenderPredictionsHook']


@HOOKS.register_module()
class RenderPredictionsHook(Hook):
    """Draw each test sample's predictions into ``out_dir``.

    Args:
        out_dir (str): where the PNGs go (relative paths are relative to the
            current directory, not the work dir).
        score_thr (float): predictions scoring ``<= score_thr`` are not
            drawn.
        draw_gt (bool): put the ground truth on the left when present.
        contact_sheet (bool): write ``out_dir/contact_sheet.png`` at the end.
        max_sheet_images (int): renderings on the contact sheet at most.
    """

    priority = 'NORMAL'

    def __init__(self,
                 out_dir: str,
                 score_thr: float = 0.3,
                 draw_gt: bool = True,
                 contact_sheet: bool = True,
                 max_sheet_images: int = 100) -> None:
        from ..visualization.render import check_score_thr
        self.out_dir = osp.abspath(out_dir)
        self.score_thr = check_score_thr(score_thr,
                                         'RenderPredictionsHook.score_thr')
        self.draw_gt = draw_gt
        self.contact_sheet = contact_sheet
        self.max_sheet_images = max_sheet_images
        self.written = []
        self._used_names = set()
        self._renderer = None

    def before_test(self, runner) -> None:
        from ..visualization import DetRenderer
        self.written = []
        self._used_names = set()
        meta = getattr(runner.test_dataloader.dataset, 'metainfo', None)
        self._renderer = DetRenderer(meta, score_thr=self.score_thr)

    def after_test_iter(self, runner, batch_idx: int, data_batch=None,
                        outputs: Optional[Sequence] = None) -> None:
        from ..visualization import render_data_samples
        if not outputs or not is_main_process():
            return
        self.written += render_data_samples(
            outputs, self._renderer.dataset_meta, self.out_dir,
            score_thr=self.score_thr, draw_gt=self.draw_gt,
            renderer=self._renderer, used_names=self._used_names)

    def after_test_epoch(self, runner, metrics=None) -> None:
        from ..visualization.render import CONTACT_SHEET, write_contact_sheet
        if not (self.contact_sheet and self.written and is_main_process()):
            return
        shown = self.written[:self.max_sheet_images]
        path = write_contact_sheet(
            shown, osp.join(self.out_dir, f'{CONTACT_SHEET}.png'))
        runner.logger.info(
            f'RenderPredictionsHook: {len(self.written)} renderings in '
            f'{self.out_dir}, contact sheet ({len(shown)}) {path}')
