"""Distributed training and testing on CPU (gloo) with mmengine 0.10.

mmengine's launchers (``pytorch``, ``slurm``, ``mpi``) call
``torch.cuda.set_device`` before ``init_process_group``, and
``Runner.wrap_model`` gives every ``DistributedDataParallel`` wrapper
``device_ids=[LOCAL_RANK]``; both fail on a machine without CUDA.

:func:`setup_distributed` is called by ``tools/train.py``/``tools/test.py``
before the Runner is built. On a CUDA machine it changes nothing. Without
CUDA it initialises the default process group itself with ``gloo`` from the
launcher's environment (torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/
``MASTER_ADDR``/``MASTER_PORT``, or Slurm's/Open MPI's), so
``Runner.setup_env`` sees an initialised group and skips mmengine's
``init_dist``; it sets ``env_cfg.dist_cfg.backend='gloo'`` and a
``model_wrapper_cfg`` of type :class:`CPUDistributedDataParallel`, which
drops the ``device_ids`` the Runner passes when the module is on the CPU.
"""

import datetime
import os
import subprocess

import torch
from mmengine.config import Config, ConfigDict
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch import distributed as torch_dist

from .errors import EcaMmdetError, first_line

__all__ = [
    'CPUDistributedDataParallel',
    'DistSetupError',
    'cleanup_distributed',
    'get_launch_rank',
    'setup_distributed',
]

DEFAULT_PORT = '29500'
LAUNCH_HINT = (
    'start multi-process runs with tools/dist_train.sh CONFIG '
    'NPROC (or python -m torch.distributed.run --nproc_per_node '
    'NPROC tools/train.py CONFIG --launcher pytorch)'
)


class DistSetupError(EcaMmdetError):
    """The launcher's environment is incomplete or the group cannot start."""


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """:class:`~mmengine.model.MMDistributedDataParallel` that also works for
    a module on the CPU.

    ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to every
    ``DistributedDataParallel`` subclass, which torch rejects for CPU modules
    ("device_ids ... only work with single-device/multiple-device GPU
    modules"). For a module whose parameters are all on the CPU this wrapper
    drops ``device_ids``/``output_device``; otherwise it is exactly the
    parent class.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        device_ids=None,
        output_device=None,
        **kwargs,
    ) -> None:
        devices = {p.device.type for p in module.parameters()}
        if devices <= {'cpu'}:
            device_ids = None
            output_device = None
        super().__init__(
            module=module,
            device_ids=device_ids,
            output_device=output_device,
            **kwargs,
        )


def get_launch_rank(launcher: str = 'pytorch') -> int:
    """The global rank given by the launcher's environment (0 if unknown);
    usable before the process group exists (e.g. to print errors once)."""
    if launcher == 'none':
        return 0
    for var in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK'):
        value = os.environ.get(var)
        if value is not None and value.isdigit():
            return int(value)
    return 0


def _require_env(launcher: str, names) -> None:
    missing = [n for n in names if n not in os.environ]
    if missing:
        raise DistSetupError(
            f'--launcher {launcher} needs the environment variable(s) '
            f'{", ".join(missing)}, which are not set; {LAUNCH_HINT}'
        )


def _env_from_launcher(launcher: str) -> None:
    """Fill torch's ``env://`` variables from the launcher's own ones."""
    if launcher == 'pytorch':
        _require_env(
            launcher, ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
        )
        os.environ.setdefault('LOCAL_RANK', '0')
    elif launcher == 'slurm':
        _require_env(launcher, ('SLURM_PROCID', 'SLURM_NTASKS'))
        os.environ['RANK'] = os.environ['SLURM_PROCID']
        os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
        os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
        os.environ.setdefault('MASTER_PORT', DEFAULT_PORT)
        if 'MASTER_ADDR' not in os.environ:
            _require_env(launcher, ('SLURM_NODELIST',))
            node_list = os.environ['SLURM_NODELIST']
            out = subprocess.run(
                ['scontrol', 'show', 'hostnames', node_list],
                capture_output=True,
                text=True,
                check=False,
            )
            hosts = out.stdout.split()
            if out.returncode != 0 or not hosts:
                raise DistSetupError(
                    f'--launcher slurm: cannot resolve the first host of '
                    f'SLURM_NODELIST={node_list} with scontrol; set '
                    'MASTER_ADDR'
                )
            os.environ['MASTER_ADDR'] = hosts[0]
    elif launcher == 'mpi':
        _require_env(
            launcher,
            ('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'MASTER_ADDR'),
        )
        os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
        os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
        os.environ['LOCAL_RANK'] = os.environ.get(
            'OMPI_COMM_WORLD_LOCAL_RANK', '0'
        )
        os.environ.setdefault('MASTER_PORT', DEFAULT_PORT)
    else:
        raise DistSetupError(
            f'unknown --launcher {launcher!r} (use none, pytorch, slurm or '
            'mpi)'
        )


def _cpu_wrapper_cfg(cfg: Config) -> ConfigDict:
    wrapper = cfg.get('model_wrapper_cfg', None)
    if wrapper is None:
        return ConfigDict(
            type='CPUDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False),
        )
    wrapper = ConfigDict(wrapper)
    if wrapper.get('type', 'MMDistributedDataParallel') in (
        'MMDistributedDataParallel',
        MMDistributedDataParallel,
    ):
        wrapper.type = 'CPUDistributedDataParallel'
    return wrapper


def setup_distributed(cfg: Config, launcher: str) -> Config:
    """Prepare ``cfg`` (in place) and the process group for ``launcher``.

    Does nothing for ``launcher='none'`` or when CUDA is available (then
    mmengine's own launcher code works). Otherwise initialises a ``gloo``
    process group from the launcher's environment and makes the Runner wrap
    the model in :class:`CPUDistributedDataParallel`.

    Raises:
        DistSetupError: the launcher's environment variables are missing or
            the rendezvous fails.
    """
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return cfg
    _env_from_launcher(launcher)

    env_cfg = cfg.get('env_cfg', None) or ConfigDict()
    dist_cfg = ConfigDict(env_cfg.get('dist_cfg', None) or {})
    dist_cfg.backend = 'gloo'
    env_cfg['dist_cfg'] = dist_cfg
    cfg.env_cfg = env_cfg
    cfg.model_wrapper_cfg = _cpu_wrapper_cfg(cfg)

    if not torch_dist.is_initialized():
        kwargs = {}
        timeout = dist_cfg.get('timeout', None)
        if timeout is not None:
            kwargs['timeout'] = datetime.timedelta(seconds=timeout)
        try:
            torch_dist.init_process_group(
                backend='gloo',
                init_method='env://',
                rank=int(os.environ['RANK']),
                world_size=int(os.environ['WORLD_SIZE']),
                **kwargs,
            )
        except (RuntimeError, ValueError) as e:
            raise DistSetupError(
                'cannot start the gloo process group at '
                f'{os.environ.get("MASTER_ADDR")}:'
                f'{os.environ.get("MASTER_PORT")} (rank '
                f'{os.environ.get("RANK")} of {os.environ.get("WORLD_SIZE")})'
                f': {first_line(e)}'
            ) from None
    return cfg


def cleanup_distributed() -> None:
    """Destroy the default process group if one was started."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        try:
            torch_dist.destroy_process_group()
        except Exception:  # already torn down by a failing peer
            pass
