"""Training/testing hooks registered in mmdet's ``HOOKS``:

* ``ProgressGifHook`` (:mod:`.progress_gif`): a GIF of the predictions on a
  few val images, one frame per validation epoch;
* ``RenderPredictionsHook`` (:mod:`.render`): mmdet's
  ``DetVisualizationHook`` in stable class colours with unique file names
  and a contact sheet (``tools/test.py --show-dir``);
* ``NonFiniteLossHook`` (:mod:`.nonfinite_loss`): stops training at the first
  NaN/inf loss with a message naming the iteration and the loss term;
* ``ScaleLrHook`` (:mod:`.lr_scale`): ``tools/train.py --lr-scale``;
* ``EpochSeedHook`` (:mod:`.epoch_seed`): reseeds every epoch so a resumed
  run repeats an uninterrupted one;
* ``SafeImageLoadingHook`` (:mod:`.image_loading`): skips unreadable training
  images, stops evaluation at one, naming it;
* ``EcaGateStatsHook`` (:mod:`.eca_gate_stats`, opt-in): per-stage ECA gate
  statistics after each validation, into the run's scalars.

The project's configs list the safety hooks (``NonFiniteLossHook``,
``EpochSeedHook``, ``SafeImageLoadingHook``) in ``custom_hooks``, so mmdet's
own ``tools/train.py`` keeps them; our ``tools/train.py`` adds any that a
config lacks.
"""

from .eca_gate_stats import EcaGateStatsHook
from .epoch_seed import EpochSeedHook
from .image_loading import SafeImageLoadingHook
from .lr_scale import ScaleLrHook
from .nonfinite_loss import NonFiniteLossError, NonFiniteLossHook
from .progress_gif import ProgressGifHook
from .render import RenderPredictionsHook

__all__ = [
    'EcaGateStatsHook',
    'EpochSeedHook',
    'NonFiniteLossError',
    'NonFiniteLossHook',
    'ProgressGifHook',
    'RenderPredictionsHook',
    'SafeImageLoadingHook',
    'ScaleLrHook',
]
