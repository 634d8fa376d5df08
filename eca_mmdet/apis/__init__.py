"""Command-line entry points behind ``tools/train.py`` and ``tools/test.py``.

Each ``main(argv)`` returns the exit status: 0, or 1 after printing one
``error: ...`` line for bad input (see
:class:`eca_mmdet.engine.EcaMmdetError`).
"""
from .test import main as test_main
from .train import main as train_main

__all__ = ['test_main', 'train_main']
