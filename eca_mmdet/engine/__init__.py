"""Run-time support for training/testing with mmengine 0.10: safe
checkpoint loading (:mod:`.checkpoint`), atomic writes (:mod:`.atomic_io`),
CPU DDP (:mod:`.dist`), the fused-optimizer fallback (:mod:`.optim`) and
the work dir lock (:mod:`.work_dir_lock`); the checks before a run are
:mod:`eca_mmdet.apis.preflight`.

Importing it only adds registry entries to mmengine;
:func:`enable_stack_fixes` (called by the project's tools, or
``custom_imports`` of ``eca_mmdet.stack_fixes`` in a config) installs the
loader and the atomic backend (see :mod:`.fixes`).
"""

from .atomic_io import AtomicLocalBackend, atomic_write, atomic_writer
from .checkpoint import (
    CheckpointLoadError,
    CheckpointMismatchError,
    ModelZooUnavailableError,
    UnsafeCheckpointError,
    checkpoint_mismatch,
    safe_checkpoint_global_names,
    safe_checkpoint_globals,
    safe_torch_load,
    state_dict_of,
)
from .dist import (
    CPUDistributedDataParallel,
    DistSetupError,
    cleanup_distributed,
    get_launch_rank,
    setup_distributed,
)
from .errors import EcaMmdetError
from .fixes import disable_stack_fixes, enable_stack_fixes, stack_fixes_enabled
from .optim import FusedFallbackOptimWrapperConstructor, fused_unavailable
from .paths import (
    NoSpaceError,
    OutputPathError,
    check_output_location,
    no_space_left,
    refuse_overwriting_inputs,
)

__all__ = [
    'AtomicLocalBackend',
    'atomic_write',
    'atomic_writer',
    'CPUDistributedDataParallel',
    'CheckpointLoadError',
    'CheckpointMismatchError',
    'checkpoint_mismatch',
    'state_dict_of',
    'DistSetupError',
    'EcaMmdetError',
    'ModelZooUnavailableError',
    'NoSpaceError',
    'OutputPathError',
    'check_output_location',
    'no_space_left',
    'refuse_overwriting_inputs',
    'UnsafeCheckpointError',
    'cleanup_distributed',
    'disable_stack_fixes',
    'enable_stack_fixes',
    'FusedFallbackOptimWrapperConstructor',
    'fused_unavailable',
    'get_launch_rank',
    'safe_checkpoint_global_names',
    'safe_checkpoint_globals',
    'safe_torch_load',
    'setup_distributed',
    'stack_fixes_enabled',
]

from .work_dir_lock import (
    WorkDirBusyError,
    lock_work_dir,  # noqa: E402
    unlock_work_dir,
)

__all__ += ['WorkDirBusyError', 'lock_work_dir', 'unlock_work_dir']
