"""Training/testing hooks registered in mmdet's ``HOOKS``:

* ``ProgressGifHook`` (:mod:`.progress_gif`): a GIF of the predictions on a
  few val images, one frame per validation epoch;
* ``RenderPredictionsHook`` (:mod:`.render`): renderings of every test
  sample plus a contact sheet (``tools/test.py --show-dir``).
"""
from .progress_gif import ProgressGifHook
from .render import RenderPredictionsHook

__all__ = ['ProgressGifHook', 'RenderPredictionsHook']
