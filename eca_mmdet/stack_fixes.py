"""Opt-in to the stack fixes from a config, with one line::

    custom_imports = dict(imports=['eca_mmdet', 'eca_mmdet.stack_fixes'],
                          allow_failed_imports=False)

Importing this module calls :func:`eca_mmdet.engine.enable_stack_fixes`:
checkpoint loading with an exact allow-list on every torch (mmengine 0.10
calls ``torch.load`` without ``weights_only``), ``torchvision://`` refused
only where torchvision cannot be imported, atomic checkpoint writes.
``import eca_mmdet`` alone does none of this. See :mod:`eca_mmdet.engine.fixes`.
"""

from .engine.fixes import enable_stack_fixes

enable_stack_fixes()
