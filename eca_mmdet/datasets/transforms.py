"""Image loading that survives a missing, unreadable or truncated file.

Policy (``tools/train.py`` / ``tools/test.py`` apply it with
:func:`guard_image_loading`): **training skips** such an image with a
warning naming it and the running count of skipped files (mmengine's dataset
then draws another sample), so a week of training is not lost to one corrupt
JPEG; **evaluation stops** with one message naming the file, because a metric
computed without some images scores their objects as missed and is not
comparable.
"""
import os
import os.path as osp
from typing import Any, List, Optional

from mmcv.transforms import LoadImageFromFile
from mmdet.registry import TRANSFORMS
from mmengine.logging import print_log

from ..engine.errors import EcaMmdetError
from ..engine.preflight import iter_datasets

__all__ = ['ImageReadError', 'SafeLoadImageFromFile', 'guard_image_loading',
           'SKIP_LOG']

# Written to the work dir: one line per skipped training image.
SKIP_LOG = 'skipped_images.txt'


class ImageReadError(EcaMmdetError):
    """An image file of an evaluation set is missing or cannot be decoded."""


@TRANSFORMS.register_module()
class SafeLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` that turns a missing, unreadable or truncated
    image into a logged skip (training) or one clear error (evaluation).

    Args:
        skip_unreadable (bool): True: warn and return None, so mmengine's
            dataset draws another sample. False: raise
            :class:`ImageReadError` naming the file.
        skip_log (str, optional): File to which each skipped path is
            appended; the warning gives the count of lines, i.e. of images
            skipped by all dataloader workers of the run.
        **kwargs: As :class:`mmcv.transforms.LoadImageFromFile`.
    """

    def __init__(self, skip_unreadable: bool = True,
                 skip_log: Optional[str] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.skip_unreadable = skip_unreadable
        self.skip_log = skip_log
        self._skipped_here = 0

    def transform(self, results: dict) -> Optional[dict]:
        path = results.get('img_path')
        try:
            out = super().transform(results)
        except Exception as e:  # noqa: BLE001 - decoders raise anything
            reason = self._reason(path, e)
        else:
            if out is not None:
                return out
            reason = 'missing or empty'
        if not self.skip_unreadable:
            raise ImageReadError(f'cannot read image {path}: {reason}')
        self._record(path, reason)
        return None

    @staticmethod
    def _reason(path: Any, error: Exception) -> str:
        if isinstance(error, FileNotFoundError) or (
                isinstance(path, str) and not osp.exists(path)):
            return 'file not found'
        if isinstance(error, AssertionError):  # mmcv: decoder returned None
            return 'not a decodable image (corrupt or truncated)'
        text = str(error).strip().splitlines()
        return f'{type(error).__name__}: {text[0] if text else ""}'.strip()

    def _record(self, path: Any, reason: str) -> None:
        self._skipped_here += 1
        count = f'{self._skipped_here} skipped by this process'
        if self.skip_log:
            try:
                with open(self.skip_log, 'a') as f:
                    f.write(f'{path}\t{reason}\n')
                with open(self.skip_log) as f:
                    count = (f'{sum(1 for _ in f)} skipped in this run, '
                             f'listed in {self.skip_log}')
            except OSError:
                pass
        print_log(f'skipping training image {path}: {reason} ({count})',
                  logger='current', level=30)

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] +
                f', skip_unreadable={self.skip_unreadable})')


def guard_image_loading(cfg: Any, work_dir: Optional[str] = None) -> List[str]:
    """Swap ``LoadImageFromFile`` for :class:`SafeLoadImageFromFile` in the
    pipelines of ``cfg``'s dataloaders: skipping (logged to
    ``work_dir/skipped_images.txt``) in ``train_dataloader``, stopping in
    ``val_dataloader``/``test_dataloader``. Pipelines that already use
    ``SafeLoadImageFromFile`` are left as configured.

    Returns:
        list[str]: the dataloader keys whose pipelines were changed.
    """
    changed = []
    for key, skip in (('train_dataloader', True), ('val_dataloader', False),
                      ('test_dataloader', False)):
        loader = cfg.get(key, None)
        if not isinstance(loader, dict):
            continue
        for _, ds in iter_datasets(loader.get('dataset', None), key):
            for step in ds.get('pipeline', None) or []:
                if isinstance(step, dict) and \
                        step.get('type') == 'LoadImageFromFile':
                    step['type'] = 'SafeLoadImageFromFile'
                    step['skip_unreadable'] = skip
                    if skip and work_dir:
                        step['skip_log'] = osp.join(
                            os.path.abspath(work_dir), SKIP_LOG)
                    changed.append(key)
    return sorted(set(changed))
