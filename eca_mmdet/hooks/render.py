"""``RenderPredictionsHook``: mmdet's ``DetVisualizationHook`` drawing in
stable class colours, with file names that never collide and a contact
sheet (``tools/test.py --show-dir DIR``).

For every test sample it writes ``DIR/<image stem>.png`` (GT | prediction
side by side when the sample has ground truth and ``draw_gt``) with
:class:`~eca_mmdet.visualization.StableColorDetVisualizer`, and at the end of
the test ``DIR/contact_sheet.png`` with the first ``max_sheet_images``
renderings. Names never collide: an image whose name an earlier image (same
file name in another folder) or the contact sheet has is written as
``<stem>_id<img_id>.png``, so the logged count is the number of files.
Everything else is mmdet's hook: validation samples go to the visualizer's
``vis_backends`` every ``interval`` iterations when ``draw=True``, and like
mmdet's hook it draws on the main process only (in a distributed test that
is rank 0's share of the images).

``tools/test.py --show-dir DIR`` puts it in ``default_hooks.visualization``
(in place of mmdet's)::

    default_hooks = dict(visualization=dict(
        type='RenderPredictionsHook', draw=True, test_out_dir='DIR'))

``out_dir='DIR'`` (the former argument) is the same as ``draw=True,
test_out_dir='DIR'``.
"""

import os.path as osp
from typing import List, Optional, Sequence

import mmcv
from mmdet.engine.hooks import DetVisualizationHook
from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.fileio import get
from mmengine.visualization import Visualizer

from ..visualization import (
    CONTACT_SHEET,
    StableColorDetVisualizer,
    check_score_thr,
    rendering_name,
    write_contact_sheet,
)

__all__ = ['RenderPredictionsHook']


@HOOKS.register_module()
class RenderPredictionsHook(DetVisualizationHook):
    """:class:`~mmdet.engine.hooks.DetVisualizationHook` with stable class
    colours, collision-free test renderings and a contact sheet.

    Args:
        draw (bool): draw at all (mmdet's switch; ``out_dir`` implies it).
        test_out_dir (str, optional): where the test PNGs go (an absolute
            path, or relative to ``WORK_DIR/<timestamp>`` as in mmdet).
        score_thr (float): predictions scoring ``<= score_thr`` are not
            drawn.
        draw_gt (bool): put the ground truth on the left when present.
        contact_sheet (bool): write ``contact_sheet.png`` at the end.
        max_sheet_images (int): renderings on the contact sheet at most.
        out_dir (str, optional): ``draw=True, test_out_dir=out_dir`` with
            ``out_dir`` relative to the current directory.
        **kwargs: the other arguments of ``DetVisualizationHook``
            (``interval``, ``show``, ``wait_time``, ``backend_args``).
    """

    def __init__(
        self,
        draw: bool = False,
        test_out_dir: Optional[str] = None,
        score_thr: float = 0.3,
        draw_gt: bool = True,
        contact_sheet: bool = True,
        max_sheet_images: int = 100,
        out_dir: Optional[str] = None,
        **kwargs,
    ) -> None:
        if out_dir is not None:
            draw, test_out_dir = True, osp.abspath(out_dir)
        try:
            Visualizer.get_current_instance()
        except RuntimeError:  # no runner (yet): a visualizer of our own
            StableColorDetVisualizer.get_instance(
                f'eca_test_visualizer_{id(self)}'
            )
        super().__init__(
            draw=draw,
            test_out_dir=test_out_dir,
            score_thr=check_score_thr(
                score_thr, f'{type(self).__name__}.score_thr'
            ),
            **kwargs,
        )
        if not isinstance(self._visualizer, StableColorDetVisualizer):
            # a config naming mmdet's visualizer: same backends, our colours
            backends = self._visualizer._vis_backends
            self._visualizer = StableColorDetVisualizer(
                name=f'eca_test_visualizer_{id(self)}'
            )
            self._visualizer._vis_backends = backends
        self.draw_gt = draw_gt
        self.contact_sheet = contact_sheet
        self.max_sheet_images = max_sheet_images
        self.written: List[str] = []
        self._used_names: set = set()

    def before_test(self, runner) -> None:
        self.written = []
        self._used_names = set()
        meta = getattr(runner.test_dataloader.dataset, 'metainfo', None)
        if meta is not None:
            self._visualizer.dataset_meta = dict(meta)

    def after_test_iter(
        self,
        runner,
        batch_idx: int,
        data_batch=None,
        outputs: Optional[Sequence] = None,
    ) -> None:
        """mmdet's test-time drawing, with names from
        :func:`~eca_mmdet.visualization.rendering_name` (unique in the run)
        and each written path kept in :attr:`written`."""
        if not (self.draw and outputs and is_main_process()):
            return
        out_dir = None
        if self.test_out_dir is not None:
            out_dir = (
                osp.join(runner.work_dir, runner.timestamp, self.test_out_dir)
                if not osp.isabs(self.test_out_dir)
                else self.test_out_dir
            )
        for sample in outputs:
            self._test_index += 1
            img_path = sample.img_path
            img = mmcv.imfrombytes(
                get(img_path, backend_args=self.backend_args),
                channel_order='rgb',
            )
            out_file = None
            if out_dir is not None:
                name = rendering_name(
                    img_path, self._used_names, sample.metainfo.get('img_id')
                )
                out_file = osp.join(out_dir, f'{name}.png')
            self._visualizer.add_datasample(
                osp.basename(img_path) if self.show else 'test_img',
                img,
                data_sample=sample,
                draw_gt=self.draw_gt,
                show=self.show,
                wait_time=self.wait_time,
                pred_score_thr=self.score_thr,
                out_file=out_file,
                step=self._test_index,
            )
            if out_file is not None:
                self.written.append(out_file)

    def after_test_epoch(self, runner, metrics=None) -> None:
        if not (self.contact_sheet and self.written and is_main_process()):
            return
        shown = self.written[: self.max_sheet_images]
        out_dir = osp.dirname(shown[0])
        path = write_contact_sheet(
            shown, osp.join(out_dir, f'{CONTACT_SHEET}.png')
        )
        runner.logger.info(
            f'{type(self).__name__}: {len(self.written)} renderings in '
            f'{out_dir}, contact sheet ({len(shown)}) {path}'
        )
