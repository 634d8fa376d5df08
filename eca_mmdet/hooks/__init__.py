"""Training/testing hooks registered in mmdet's ``HOOKS``:

* ``ProgressGifHook`` (:mod:`.progress_gif`): a GIF of the predictions on a
  few val images, one frame per validation epoch;
* ``RenderPredictionsHook`` (:mod:`.render`): renderings of every test
  sample plus a contact sheet (``tools/test.py --show-dir``);
* ``NonFiniteLossHook`` (:mod:`.nonfinite_loss`): stops training at the first
  NaN/inf loss with a message naming the iteration and the loss term;
* ``ScaleLrHook`` (:mod:`.lr_scale`): ``tools/train.py --lr-scale``;
* ``EpochSeedHook`` (:mod:`.epoch_seed`): reseeds every epoch so a resumed
  run repeats an uninterrupted one (added by ``tools/train.py``).
"""
from .epoch_seed import EpochSeedHook
from .lr_scale import ScaleLrHook
from .nonfinite_loss import NonFiniteLossError, NonFiniteLossHook
from .progress_gif import ProgressGifHook
from .render import RenderPredictionsHook

__all__ = [
    'EpochSeedHook', 'NonFiniteLossError', 'NonFiniteLossHook', 'ProgressGifHook',
    'RenderPredictionsHook', 'ScaleLrHook'
]
