"""What ``tools/train.py`` and ``tools/test.py`` share: argument parsing,
config loading, runner building and the one-line error handling."""

import argparse
import difflib
import inspect
import os
import os.path as osp
import signal
import sys
from typing import Callable, List, Optional, Sequence

from mmengine.config import Config, ConfigDict, DictAction

from ..engine import (
    EcaMmdetError,
    NoSpaceError,
    cleanup_distributed,
    enable_stack_fixes,
    get_launch_rank,
    no_space_left,
)
from ..engine.errors import CONFIG_BUILD_ERRORS, first_line

__all__ = [
    'CfgOptionsAction',
    'CliArgumentParser',
    'ConfigError',
    'Interrupted',
    'add_common_args',
    'add_hooks',
    'build_runner',
    'check_loop_cfgs',
    'load_config',
    'log_data_warnings',
    'resolve_work_dir',
    'run_cli',
]

DEBUG_ENV = 'ECA_MMDET_DEBUG'


class ConfigError(EcaMmdetError):
    """The config file or a ``--cfg-options`` value is unusable."""


class Interrupted(EcaMmdetError):
    """The user stopped the tool (Ctrl-C / SIGINT); exit status 130."""

    exit_code = 130


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` refusing an item without ``=`` in one line
    (``DictAction`` fails on it with a ``ValueError`` traceback)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for item in values or ():
            key = item.split('=', 1)[0]
            if '=' not in item or not key:
                raise ConfigError(
                    f'{option_string or "--cfg-options"} {item!r}: expected '
                    'KEY=VALUE (e.g. train_cfg.max_epochs=2; lists as '
                    'KEY="[a,b]"; no spaces around =)'
                )
        super().__call__(parser, namespace, values, option_string)


class CliArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error exits with status 1 like every other
    input error of our tools, and an option may keep older spellings
    (``add_argument(..., aliases=['--score-thr'])``): accepted, not shown
    in ``--help``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._required_with_aliases: List[argparse.Action] = []

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(1, f'{self.prog}: error: {message}\n')

    def add_argument(self, *args, aliases: Sequence[str] = (), **kwargs):
        """argparse's ``add_argument``; ``aliases`` are older spellings of
        the option, which set the same value but are left out of
        ``--help``."""
        if not aliases:
            return super().add_argument(*args, **kwargs)
        required = kwargs.pop('required', False)
        action = super().add_argument(*args, **kwargs)
        shared = ('action', 'nargs', 'const', 'type', 'choices', 'metavar')
        for alias in aliases:
            super().add_argument(
                alias,
                dest=action.dest,
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
                **{k: v for k, v in kwargs.items() if k in shared},
            )
        if required:  # by the option or one of its aliases
            self._required_with_aliases.append(action)
        return action

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        missing = [
            action.option_strings[0]
            for action in self._required_with_aliases
            if getattr(namespace, action.dest, None) is None
        ]
        if missing:
            self.error(
                'the following arguments are required: ' + ', '.join(missing)
            )
        return namespace, extras


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options``, ``--launcher`` and ``--local_rank``."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        metavar='KEY=VALUE',
        help='override config entries, e.g. '
        'train_dataloader.dataset.data_root=data/shapes/ '
        'model.backbone.init_cfg=None; lists as key="[a,b]"; no spaces',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher (tools/dist_*.sh use pytorch); works on CPU '
        'with gloo',
    )
    parser.add_argument(
        '--check',
        action='store_true',
        help='only check the config, data and checkpoints, then exit '
        '(tools/dist_*.sh do this once before starting the processes)',
    )
    # torch.distributed.launch passes --local-rank (torch >= 2) or
    # --local_rank; torchrun only sets LOCAL_RANK.
    parser.add_argument(
        '--local_rank',
        '--local-rank',
        type=int,
        default=0,
        help=argparse.SUPPRESS,
    )


def _user_message(error: BaseException) -> str:
    """The message of one of our errors; one raised in a dataloader worker
    reaches the main process as 'Caught X in DataLoader worker ... Original
    Traceback ...': keep its last line without the class name."""
    text = str(error).strip()
    if 'Original Traceback' in text:
        last = text.splitlines()[-1]
        prefix = f'{type(error).__name__}: '
        if prefix in last:
            return last.split(prefix, 1)[1]
        return last
    return text


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """``Config.fromfile(path)`` merged with ``cfg_options``; errors become
    :class:`ConfigError` naming the file or the option."""
    if not osp.isfile(path):
        raise ConfigError(f'config file not found: {path}')
    try:
        cfg = Config.fromfile(path)
    except Exception as e:  # syntax errors, bad _base_, failed imports
        if os.environ.get(DEBUG_ENV):
            raise
        raise ConfigError(
            f'cannot load config {path}: {type(e).__name__}: {first_line(e)}'
        ) from None
    if cfg_options:
        try:
            cfg.merge_from_dict(cfg_options)
        except Exception as e:
            if os.environ.get(DEBUG_ENV):
                raise
            raise ConfigError(
                f'cannot apply --cfg-options {cfg_options} to {path}: '
                f'{type(e).__name__}: {first_line(e)}'
            ) from None
    return cfg


# The arguments the Runner passes to a loop itself.
_RUNNER_LOOP_ARGS = ('self', 'runner', 'dataloader', 'evaluator')
# mmengine's loop for a config without ``type`` (Runner.build_*_loop).
_DEFAULT_LOOPS = dict(val_cfg='ValLoop', test_cfg='TestLoop')


def _loop_class(key: str, loop_cfg: dict):
    """The loop class the Runner builds for ``cfg[key]`` (None if unknown)."""
    from mmdet.registry import LOOPS

    if 'type' in loop_cfg:
        loop_type = loop_cfg['type']
    elif key == 'train_cfg':
        loop_type = (
            'EpochBasedTrainLoop'
            if loop_cfg.get('by_epoch', False)
            else 'IterBasedTrainLoop'
        )
    else:
        loop_type = _DEFAULT_LOOPS[key]
    if inspect.isclass(loop_type):
        return loop_type
    try:
        return LOOPS.get(loop_type)
    except Exception:  # noqa: BLE001 - left to the runner to report
        return None


def check_loop_cfgs(
    cfg: Config,
    config_path: str,
    keys: Sequence[str] = ('train_cfg', 'val_cfg'),
) -> None:
    """Refuse a key of ``cfg.train_cfg`` / ``val_cfg`` / ``test_cfg`` that
    the loop class does not take (e.g. ``train_cfg.max_epoch``): mmengine
    only fails on it with a traceback once the loop is built.

    Raises:
        ConfigError: naming the key, the loop and the keys it knows.
    """
    for key in keys:
        loop_cfg = cfg.get(key, None)
        if not isinstance(loop_cfg, dict):
            continue
        loop_cls = _loop_class(key, loop_cfg)
        if loop_cls is None:
            continue
        params = inspect.signature(loop_cls.__init__).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            continue
        known = [n for n in params if n not in _RUNNER_LOOP_ARGS]
        extra = ['type', '_scope_']
        if key == 'train_cfg' and 'type' not in loop_cfg:
            extra.append('by_epoch')
        unknown = [k for k in loop_cfg if k not in known and k not in extra]
        if not unknown:
            continue
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f'did you mean {key}.{close[0]}? ' if close else ''
        raise ConfigError(
            f'{key}.{unknown[0]} (from {config_path} or --cfg-options) is not '
            f'an argument of {loop_cls.__name__}; {hint}its keys are: '
            f'{", ".join(known)}'
        )


def add_hooks(cfg: Config, types: Sequence[str]) -> None:
    """Append a default ``dict(type=T)`` to ``cfg.custom_hooks`` for each
    of ``types`` the config does not list yet."""
    hooks = list(cfg.get('custom_hooks', None) or [])
    listed = {h.get('type') for h in hooks if isinstance(h, dict)}
    hooks.extend(ConfigDict(type=t) for t in types if t not in listed)
    cfg.custom_hooks = hooks


def resolve_work_dir(
    cfg: Config, config_path: str, work_dir: Optional[str]
) -> str:
    """``--work-dir`` > ``work_dir`` of the config > work_dirs/<config>."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join(
            './work_dirs', osp.splitext(osp.basename(config_path))[0]
        )
    return cfg.work_dir


def build_runner(cfg: Config, config_path: str):
    """Build mmengine's Runner (or ``cfg.runner_type``) from ``cfg``.

    Errors while building (unknown types in a registry, bad arguments) are
    config errors: they become :class:`ConfigError` unless
    ``ECA_MMDET_DEBUG=1`` asks for the traceback.
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    try:
        if 'runner_type' in cfg:
            return RUNNERS.build(cfg)
        return Runner.from_cfg(cfg)
    except EcaMmdetError:
        raise
    except CONFIG_BUILD_ERRORS as e:
        if os.environ.get(DEBUG_ENV):
            raise
        raise ConfigError(
            f'cannot build the runner from {config_path}: '
            f'{type(e).__name__}: {first_line(e)} (set {DEBUG_ENV}=1 for '
            'the traceback)'
        ) from None


def log_data_warnings(warnings: Sequence[str], runner=None) -> None:
    """Report what preflight found mmdet will skip: into the runner's log
    (console and log file) once it exists, else on stderr."""
    for line in warnings:
        if runner is not None:
            if runner.rank == 0:
                runner.logger.warning(line)
        else:
            print(f'warning: {line}', file=sys.stderr)


def run_cli(
    main: Callable[[argparse.Namespace], Optional[int]],
    parser: argparse.ArgumentParser,
    argv: Optional[Sequence[str]] = None,
) -> int:
    """The one entry-point wrapper of our tools: parse ``argv``, turn on the
    stack fixes (:func:`~eca_mmdet.engine.enable_stack_fixes`), run
    ``main(args)`` and turn our errors into ``error: <message>`` on stderr
    (printed by rank 0 only) and status 1 (130 for Ctrl-C,
    :class:`Interrupted`). A parser without ``--launcher`` (the rendering
    tools) runs as one process; its messages are printed on one line."""
    launcher = 'pytorch'  # until parsed: any launcher's rank variables
    one_line = False
    try:
        args = parser.parse_args(argv)
        launcher = getattr(args, 'launcher', 'none')
        one_line = not hasattr(args, 'launcher')
        enable_stack_fixes()
        if 'LOCAL_RANK' not in os.environ and hasattr(args, 'local_rank'):
            os.environ['LOCAL_RANK'] = str(args.local_rank)
        try:
            return main(args) or 0
        except (OSError, RuntimeError) as e:
            full = no_space_left(e)
            if full is None:
                raise
            raise NoSpaceError(
                f'no space left on the device '
                f'({getattr(full, "filename", None) or first_line(full)}); '
                'what was written before is complete (checkpoints and '
                'results are written atomically, never in part): free some '
                'space and run again (a training with --resume)'
            ) from None
    except (EcaMmdetError, KeyboardInterrupt) as e:
        if isinstance(e, KeyboardInterrupt):
            e = Interrupted('interrupted (SIGINT)')
        if isinstance(e, Interrupted):
            # a second Ctrl-C while stopping ends the process at once
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        elif os.environ.get(DEBUG_ENV):
            raise
        if get_launch_rank(launcher) == 0:
            message = _user_message(e)
            if one_line:
                message = ' '.join(message.split()) or type(e).__name__
            print(f'error: {message}', file=sys.stderr, flush=True)
        return getattr(e, 'exit_code', 1)
    finally:
        cleanup_distributed()
