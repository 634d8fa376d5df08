"""Image loading that survives a missing, unreadable or truncated file.

Policy (applied by :class:`~eca_mmdet.hooks.SafeImageLoadingHook`, which the
project's configs and tools add, with :func:`guard_image_loading`):
**training skips** such an image with a
warning naming it and the running count of skipped files (mmengine's dataset
then draws another sample), so a week of training is not lost to one corrupt
JPEG; **evaluation stops** with one message naming the file, because a metric
computed without some images scores their objects as missed and is not
comparable.
"""
import os.path as osp
from typing import Any, Iterator, Optional

from mmcv.transforms import LoadImageFromFile
from mmdet.registry import TRANSFORMS
from mmengine.logging import print_log

from ..engine.errors import EcaMmdetError

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


def _pipelines(dataset: Any) -> Iterator[Any]:
    """The ``Compose`` pipelines of ``dataset`` and of the datasets it wraps
    (``ConcatDataset.datasets``, ``RepeatDataset.dataset``, ...)."""
    seen, todo = set(), [dataset]
    while todo:
        ds = todo.pop()
        if ds is None or id(ds) in seen:
            continue
        seen.add(id(ds))
        pipeline = getattr(ds, 'pipeline', None)
        if pipeline is not None and hasattr(pipeline, 'transforms'):
            yield pipeline
        todo.extend(getattr(ds, 'datasets', None) or [])
        todo.append(getattr(ds, 'dataset', None))


def guard_image_loading(dataset: Any, skip_unreadable: bool,
                        skip_log: Optional[str] = None) -> int:
    """Replace every mmcv ``LoadImageFromFile`` in the pipelines of the built
    ``dataset`` (and the datasets it wraps) by a
    :class:`SafeLoadImageFromFile` with the same settings.

    Works on the built objects, not on the config, so the config a run saves
    keeps the stock loader (``init_detector``, ``DetInferencer`` and
    ``inference_detector`` on arrays rely on it). Loaders that are already
    :class:`SafeLoadImageFromFile`, or other subclasses, are left as they are.

    Returns:
        int: How many loaders were replaced.
    """
    replaced = 0
    for pipeline in _pipelines(dataset):
        for i, step in enumerate(pipeline.transforms):
            if type(step) is not LoadImageFromFile:
                continue
            safe = SafeLoadImageFromFile.__new__(SafeLoadImageFromFile)
            safe.__dict__.update(vars(step))
            safe.skip_unreadable = skip_unreadable
            safe.skip_log = skip_log
            safe._skipped_here = 0
            pipeline.transforms[i] = safe
            replaced += 1
    return replaced
