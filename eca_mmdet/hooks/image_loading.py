"""Skip unreadable training images, stop at unreadable evaluation images."""

import os.path as osp

from mmdet.registry import HOOKS
from mmengine.hooks import Hook

from ..datasets.transforms import SKIP_LOG, guard_image_loading


@HOOKS.register_module()
class SafeImageLoadingHook(Hook):
    """Guard the image loading of the run's dataloaders with
    :class:`~eca_mmdet.datasets.SafeLoadImageFromFile`: a missing, empty,
    unreadable or truncated image, or one of another size than its
    annotation's width/height, is skipped in training (a warning with the
    count of distinct skipped files, and one line per file in
    ``WORK_DIR/skipped_images.txt``) and stops evaluation with one message
    naming the file.

    The loaders are replaced in the built datasets before the first batch is
    loaded (``before_train``/``before_val``/``before_test``), so the config,
    and the copy of it the run saves, keep mmcv's ``LoadImageFromFile``.
    The project's configs and tools add this hook.

    Args:
        skip_train (bool): Skip unreadable training images (True) or stop
            like evaluation does (False).
    """

    priority = 'VERY_HIGH'

    def __init__(self, skip_train: bool = True) -> None:
        self.skip_train = skip_train

    @staticmethod
    def _dataset(runner, loop: str):
        loop = getattr(runner, f'_{loop}_loop', None)
        loader = getattr(loop, 'dataloader', None)
        return getattr(loader, 'dataset', None)

    def before_train(self, runner) -> None:
        guard_image_loading(
            self._dataset(runner, 'train'),
            self.skip_train,
            osp.join(osp.abspath(runner.work_dir), SKIP_LOG)
            if self.skip_train
            else None,
        )
        guard_image_loading(self._dataset(runner, 'val'), False)

    def before_val(self, runner) -> None:
        guard_image_loading(self._dataset(runner, 'val'), False)

    def before_test(self, runner) -> None:
        guard_image_loading(self._dataset(runner, 'test'), False)
