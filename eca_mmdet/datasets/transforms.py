"""Image loading that survives a missing, empty, unreadable or truncated
file, or one whose size is not the size its annotation gives.

Policy (applied by :class:`~eca_mmdet.hooks.SafeImageLoadingHook`, which the
project's configs and tools add, with :func:`guard_image_loading`):
**training skips** such an image with a
warning naming it and the running count of distinct skipped files
(mmengine's dataset then draws another sample), so a week of training is not
lost to one corrupt JPEG; **evaluation stops** with one message naming the
file, because a metric computed without some images scores their objects as
missed and is not comparable. (For val/test sets the preflight already reads
every image header and stops before the model is built; in training the size
is compared here, on the decoded image, at no extra cost.)
"""

import os.path as osp
from typing import Any, Iterator, Optional, Set

from mmcv.transforms import LoadImageFromFile
from mmdet.registry import TRANSFORMS
from mmengine.logging import print_log

from ..engine.errors import EcaMmdetError

__all__ = [
    'ImageReadError',
    'SafeLoadImageFromFile',
    'guard_image_loading',
    'SKIP_LOG',
]

# Written to the work dir: one line per skipped training image.
SKIP_LOG = 'skipped_images.txt'


class ImageReadError(EcaMmdetError):
    """An image file of an evaluation set is missing or cannot be decoded."""


@TRANSFORMS.register_module()
class SafeLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` that turns a missing, empty, unreadable or
    truncated image, or one of another size than the ``height``/``width``
    of its annotation (its boxes and masks would not fit it), into a logged
    skip (training) or one clear error (evaluation).

    Args:
        skip_unreadable (bool): True: warn and return None, so mmengine's
            dataset draws another sample. False: raise
            :class:`ImageReadError` naming the file.
        skip_log (str, optional): File listing each skipped path once (a
            file skipped again in a later epoch is not added again); the
            warning gives the count of its files, i.e. of the distinct
            images skipped by all dataloader workers of the run.
        **kwargs: As :class:`mmcv.transforms.LoadImageFromFile`.
    """

    def __init__(
        self,
        skip_unreadable: bool = True,
        skip_log: Optional[str] = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.skip_unreadable = skip_unreadable
        self.skip_log = skip_log
        self._skipped_here: Set[str] = set()

    def transform(self, results: dict) -> Optional[dict]:
        path = results.get('img_path')
        verb = 'read'
        try:
            out = super().transform(results)
        except Exception as e:  # noqa: BLE001 - decoders raise anything
            reason = self._reason(path, e)
        else:
            if out is None:
                reason = 'missing or empty'
            else:
                reason, verb = self._size_problem(out), 'use'
                if reason is None:
                    return out
        if not self.skip_unreadable:
            raise ImageReadError(f'cannot {verb} image {path}: {reason}')
        self._record(path, reason)
        return None

    @staticmethod
    def _size_problem(results: dict) -> Optional[str]:
        """A mismatch between the decoded image and the ``height`` and
        ``width`` of its annotation (as CocoDataset gives them)."""
        height, width = results.get('height'), results.get('width')
        if not all(isinstance(v, (int, float)) for v in (height, width)):
            return None
        h, w = results['img'].shape[:2]
        if (h, w) == (height, width):
            return None
        return (
            f'the image is {w}x{h} pixels but its annotation says '
            f'{width:g}x{height:g} (width x height); its boxes and masks '
            'would not fit it'
        )

    @staticmethod
    def _reason(path: Any, error: Exception) -> str:
        if isinstance(error, FileNotFoundError) or (
            isinstance(path, str) and not osp.exists(path)
        ):
            return 'file not found'
        if (
            isinstance(path, str)
            and osp.isfile(path)
            and osp.getsize(path) == 0
        ):
            return 'empty file (0 bytes)'
        if isinstance(error, AssertionError):  # mmcv: decoder returned None
            return 'not a decodable image (corrupt or truncated)'
        text = str(error).strip().splitlines()
        return f'{type(error).__name__}: {text[0] if text else ""}'.strip()

    def _record(self, path: Any, reason: str) -> None:
        """Warn, and list ``path`` in the skip log unless it is there: the
        count is of distinct files, however often (epochs, workers) each was
        skipped."""
        self._skipped_here.add(str(path))
        count = f'{len(self._skipped_here)} skipped by this process'
        if self.skip_log:
            try:
                listed = _append_once(self.skip_log, str(path), reason)
                count = (
                    f'{listed} distinct image(s) skipped in this run, '
                    f'listed in {self.skip_log}'
                )
            except OSError:
                pass
        print_log(
            f'skipping training image {path}: {reason} ({count})',
            logger='current',
            level=30,
        )

    def __repr__(self) -> str:
        return (
            super().__repr__()[:-1]
            + f', skip_unreadable={self.skip_unreadable})'
        )


def _append_once(log: str, path: str, reason: str) -> int:
    """Add ``path<TAB>reason`` to ``log`` unless ``path`` is listed; return
    how many paths are listed. Dataloader workers of one run share the file:
    an exclusive lock (where ``fcntl`` exists) keeps the check and the
    append together."""
    with open(log, 'a+') as f:
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass
        f.seek(0)
        listed = {line.split('\t', 1)[0] for line in f if line.strip()}
        if path not in listed:
            f.write(f'{path}\t{reason}\n')
            f.flush()
            listed.add(path)
        return len(listed)  # the lock goes with the file


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


def guard_image_loading(
    dataset: Any, skip_unreadable: bool, skip_log: Optional[str] = None
) -> int:
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
            safe._skipped_here = set()
            pipeline.transforms[i] = safe
            replaced += 1
    return replaced
