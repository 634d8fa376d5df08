"""Side-by-side timing of ECA models against their plain mmdet twins.

Each case times model A (with ECA) and model B (without) alternately in one
process, A/B/A/B after a warm-up, so that drifts of the machine (frequency,
other load) hit both alike. Two figures: the ratio of the fastest runs
(mean of the fastest fifth of A over that of B; on a shared machine
interference only adds time, so the fastest runs are the least disturbed)
and the median of the per-pair ratios A/B, with their min and max.
"""

import datetime
import math
import os
import os.path as osp
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch
from mmdet.models.backbones.resnet import Bottleneck
from torch import nn

from .models import ECALayer

CPU = torch.device('cpu')


@dataclass
class PairTiming:
    """Result of one A/B case: seconds per call and the A/B ratios."""

    name: str
    a_label: str
    b_label: str
    a_seconds: List[float] = field(default_factory=list)
    b_seconds: List[float] = field(default_factory=list)

    @property
    def ratios(self) -> List[float]:
        return [a / b for a, b in zip(self.a_seconds, self.b_seconds)]

    @staticmethod
    def fastest(seconds: List[float]) -> float:
        """Mean of the fastest fifth of ``seconds`` (at least one run)."""
        k = max(1, math.ceil(len(seconds) / 5))
        return statistics.fmean(sorted(seconds)[:k])

    def summary(self) -> Dict[str, float]:
        ratios = self.ratios
        a_fast, b_fast = (
            self.fastest(self.a_seconds),
            self.fastest(self.b_seconds),
        )
        return dict(
            a_fastest_s=a_fast,
            b_fastest_s=b_fast,
            ratio_fastest=a_fast / b_fast,
            a_median_s=statistics.median(self.a_seconds),
            b_median_s=statistics.median(self.b_seconds),
            ratio_median=statistics.median(ratios),
            ratio_min=min(ratios),
            ratio_max=max(ratios),
            pairs=len(ratios),
        )

    def to_dict(self) -> dict:
        return dict(asdict(self), **self.summary())


def cpu_model(cpuinfo: str = '/proc/cpuinfo') -> str:
    """The CPU's model name: the first ``model name`` of ``cpuinfo``
    (Linux), else ``platform.processor()``, else the architecture."""
    try:
        with open(cpuinfo, encoding='utf-8', errors='replace') as f:
            for line in f:
                key, sep, value = line.partition(':')
                if sep and key.strip() == 'model name' and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(repo: str, *args: str) -> Optional[str]:
    try:
        proc = subprocess.run(
            ['git', '-C', repo, *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_commit(repo: str) -> Optional[str]:
    """The commit checked out at ``repo`` (``-dirty`` appended when tracked
    files differ from it), or None when ``repo`` is not the top of a git
    checkout (e.g. an installed copy inside some other repository)."""
    top = _git(repo, 'rev-parse', '--show-toplevel')
    if top is None or osp.realpath(top) != osp.realpath(repo):
        return None
    commit = _git(repo, 'rev-parse', 'HEAD')
    if not commit:
        return None
    if _git(repo, 'status', '--porcelain', '--untracked-files=no'):
        commit += '-dirty'
    return commit


def run_environment(
    device: torch.device,
    repo: Optional[str] = None,
    argv: Optional[Sequence[str]] = None,
) -> dict:
    """What produced a set of timings: CPU model, logical cores, device
    (and GPU name), torch and Python versions, git commit of ``repo`` (when
    it is a checkout), UTC date and the command line (``argv``, default
    ``sys.argv``)."""
    env = dict(
        cpu=cpu_model(),
        logical_cores=os.cpu_count(),
        device=str(device),
    )
    if device.type == 'cuda':
        env['gpu'] = torch.cuda.get_device_name(device)
    env.update(
        torch=torch.__version__,
        python=platform.python_version(),
    )
    commit = git_commit(repo) if repo else None
    if commit:
        env['commit'] = commit
    now = datetime.datetime.now(datetime.timezone.utc)
    env['date'] = now.isoformat(timespec='seconds')
    argv = list(sys.argv if argv is None else argv)
    env['command'] = ' '.join(shlex.quote(a) for a in ['python', *argv])
    return env


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_pairs(
    name: str,
    run_a: Callable[[], object],
    run_b: Callable[[], object],
    pairs: int = 15,
    warmup: int = 2,
    device: torch.device = CPU,
    a_label: str = 'eca',
    b_label: str = 'plain',
    progress: Optional[Callable[[str], None]] = None,
) -> PairTiming:
    """Time ``run_a`` and ``run_b`` alternately: ``warmup`` untimed pairs,
    then ``pairs`` timed ones (the order within a pair alternates too)."""
    result = PairTiming(name, a_label, b_label)
    for _ in range(warmup):
        run_a(), run_b()
    for i in range(pairs):
        order = [(run_a, result.a_seconds), (run_b, result.b_seconds)]
        for run, out in order if i % 2 == 0 else order[::-1]:
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            out.append(time.perf_counter() - start)
        if progress is not None:
            progress(
                f'{name}: pair {i + 1}/{pairs} ratio {result.ratios[-1]:.3f}'
            )
    return result


def inference_step(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """A no-grad forward of ``model`` on ``x``."""
    model.eval()

    def run():
        with torch.no_grad():
            return model(x)

    return run


def train_step(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """Forward and backward of ``model`` on ``x`` (sum of its outputs)."""
    model.train()

    def run():
        model.zero_grad(set_to_none=True)
        outs = model(x)
        sum(o.float().mean() for o in outs).backward()

    return run


def make_eca_twin(eca: nn.Module, plain: nn.Module) -> None:
    """Give ``eca`` (a model with an ECAResNet backbone) the weights of
    ``plain`` (the same model on mmdet's ResNet), with every ECA gate at 0.5
    (zero conv weights) and the last norm of every block doubled to undo it:
    both compute the same features, so a detector's heads do the same work
    (the number of boxes surviving NMS, the masks pasted) on both sides, and
    their time ratio is ECA's own cost. The features are equal up to
    rounding (the fused ECA folds the gate into a frozen BN's affine map).
    """
    own, state = eca.state_dict(), plain.state_dict()
    differ = [
        k
        for k in own
        if '.eca.' not in k
        and (k not in state or state[k].shape != own[k].shape)
    ]
    differ += [k for k in state if k not in own]
    if differ:
        raise ValueError(
            f'the two models differ by more than ECA: {differ[:3]}'
        )
    eca.load_state_dict(state, strict=False)
    with torch.no_grad():
        for block in eca.modules():
            if not isinstance(getattr(block, 'eca', None), ECALayer):
                continue
            block.eca.conv.weight.zero_()
            last = (
                block.norm3 if isinstance(block, Bottleneck) else block.norm2
            )
            last.weight.mul_(2)
            last.bias.mul_(2)


def format_table(results: List[PairTiming]) -> str:
    """A plain-text table: one row per case."""
    rows = [
        (
            'case',
            'A',
            'B',
            'A s fastest',
            'B s fastest',
            'A/B fastest',
            'A/B median',
            'min',
            'max',
            'pairs',
        )
    ]
    for r in results:
        s = r.summary()
        rows.append(
            (
                r.name,
                r.a_label,
                r.b_label,
                f'{s["a_fastest_s"]:.4f}',
                f'{s["b_fastest_s"]:.4f}',
                f'{s["ratio_fastest"]:.4f}',
                f'{s["ratio_median"]:.4f}',
                f'{s["ratio_min"]:.4f}',
                f'{s["ratio_max"]:.4f}',
                str(s['pairs']),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        '  '.join(c.ljust(w) for c, w in zip(row, widths)) for row in rows
    ]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)
