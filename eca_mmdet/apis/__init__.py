"""The Python API (mmdet's meaning of ``apis``): load a detector and
predict (:mod:`.inference`)::

    from eca_mmdet.apis import load_detector, predict
    model = load_detector(CONFIG, CHECKPOINT)
    results = predict(model, ['image.png'])  # one DetDataSample per image

and the entry points behind ``tools/train.py`` and ``tools/test.py``. Each
``main(argv)`` returns the exit status: 0, or 1 after printing one
``error: ...`` line for bad input (see
:class:`eca_mmdet.engine.EcaMmdetError`).
"""

from .inference import (
    PredictInputError,
    load_detector,
    load_weights,
    predict,
)
from .test import main as test_main
from .train import main as train_main

__all__ = [
    'PredictInputError',
    'load_detector',
    'load_weights',
    'predict',
    'test_main',
    'train_main',
]
