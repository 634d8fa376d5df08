"""Run-time fixes and checks for training/testing with mmengine 0.10 here.

Importing this package registers the safe checkpoint loader (see
:mod:`.checkpoint`), atomic checkpoint writes (see :mod:`.atomic_io`) and the
CPU DDP wrapper (see :mod:`.dist`).
"""
from .atomic_io import AtomicLocalBackend, atomic_write, register_atomic_writes
from .checkpoint import (CheckpointLoadError, CheckpointMismatchError,
                         ModelZooUnavailableError, UnsafeCheckpointError,
                         checkpoint_mismatch, register_safe_loading,
                         safe_checkpoint_global_names, safe_checkpoint_globals,
                         safe_torch_load, state_dict_of)
from .dist import (CPUDistributedDataParallel, DistSetupError,
                   cleanup_distributed, get_launch_rank, setup_distributed)
from .errors import EcaMmdetError
from .preflight import PreflightError, preflight_check

register_safe_loading()
register_atomic_writes()

__all__ = [
    'AtomicLocalBackend', 'atomic_write', 'register_atomic_writes',
    'CPUDistributedDataParallel', 'CheckpointLoadError',
    'CheckpointMismatchError', 'checkpoint_mismatch', 'state_dict_of', 'DistSetupError',
    'EcaMmdetError', 'ModelZooUnavailableError', 'PreflightError',
    'UnsafeCheckpointError', 'cleanup_distributed', 'get_launch_rank',
    'preflight_check', 'register_safe_loading',
    'safe_checkpoint_global_names', 'safe_checkpoint_globals',
    'safe_torch_load', 'setup_distributed'
]
