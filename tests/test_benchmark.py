"""The benchmark compares like with like: A/B alternate, and the ECA twin of
a plain model computes exactly the same outputs (so detector heads do the
same work on both sides)."""

import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmdet')

from mmdet.registry import MODELS  # noqa: E402

import eca_mmdet  # noqa: E402,F401
from eca_mmdet.benchmark import (  # noqa: E402
    PairTiming,
    cpu_model,
    format_table,
    git_commit,
    make_eca_twin,
    time_pairs,
)
from eca_mmdet.models import ECAResNet  # noqa: E402


def test_time_pairs_alternates_and_reports_ratios():
    calls = []

    def run(label, seconds):
        def f():
            calls.append(label)
            time.sleep(seconds)

        return f

    result = time_pairs(
        'x', run('a', 0.004), run('b', 0.002), pairs=4, warmup=1
    )
    assert calls == ['a', 'b', 'a', 'b', 'b', 'a', 'a', 'b', 'b', 'a']
    assert len(result.ratios) == 4
    assert result.summary()['ratio_median'] > 1.3


def test_fastest_ratio_ignores_runs_slowed_by_interference():
    """Interference only adds time: A is 1.02x B in its undisturbed runs;
    a few runs of each side were slowed (by 50% and 80%)."""
    b = [1.0] * 10
    a = [1.02] * 10
    b[3], b[7], a[1] = 1.8, 1.5, 1.53
    timing = PairTiming('case', 'eca', 'plain', a, b)
    s = timing.summary()
    assert s['a_fastest_s'] == pytest.approx(1.02)
    assert s['b_fastest_s'] == pytest.approx(1.0)
    assert s['ratio_fastest'] == pytest.approx(1.02)
    # the median of pair ratios is 1.02 here too, but the spread is wide
    assert s['ratio_min'] == pytest.approx(1.02 / 1.8)
    assert s['ratio_max'] == pytest.approx(1.53)
    # the fastest fifth: 2 of 10 runs, so one slow run does not count
    assert PairTiming.fastest([3.0, 1.0, 2.0, 1.2, 9.0]) == 1.0
    assert PairTiming.fastest([4, 1, 2, 3, 5, 6, 7, 8, 9, 10]) == 1.5
    row = format_table([timing]).splitlines()[2].split()
    assert row[:6] == ['case', 'eca', 'plain', '1.0200', '1.0000', '1.0200']


@pytest.mark.parametrize('depth', [18, 50])
def test_eca_twin_computes_the_plain_outputs(depth):
    torch.manual_seed(0)
    plain = MODELS.build(dict(type='ResNet', depth=depth))
    with torch.no_grad():  # non-trivial weights everywhere
        for p in plain.parameters():
            p.uniform_(-0.5, 0.5)
    eca = ECAResNet(depth=depth)
    make_eca_twin(eca, plain)
    plain.eval()
    eca.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(eca(x), plain(x)):
            # equal up to rounding (the fused ECA folds the gate into BN)
            tol = 1e-5 * b.abs().max().item()
            torch.testing.assert_close(a, b, rtol=1e-5, atol=tol)
    # the twin still has ECA: with gates other than 0.5 the outputs differ
    with torch.no_grad():
        eca.layer1[0].eca.conv.weight.fill_(1.0)
        a, b = eca(x)[0], plain(x)[0]
        assert not torch.allclose(a, b, rtol=1e-3, atol=1e-3 * b.abs().max())


def test_eca_twin_refuses_models_that_differ_by_more_than_eca():
    with pytest.raises(ValueError, match='differ by more than ECA'):
        make_eca_twin(
            ECAResNet(depth=50), MODELS.build(dict(type='ResNet', depth=18))
        )


def test_cpu_model_is_the_model_name_of_cpuinfo(tmp_path):
    info = tmp_path / 'cpuinfo'
    info.write_text(
        'processor\t: 0\nvendor_id\t: AuthenticAMD\n'
        'model name\t: Example CPU 9000 16-Core\nflags\t\t: fpu\n\n'
        'processor\t: 1\nmodel name\t: Example CPU 9000 16-Core\n'
    )
    assert cpu_model(str(info)) == 'Example CPU 9000 16-Core'
    # no file (macOS, Windows) or no model name (some ARM kernels)
    fallback = platform.processor() or platform.machine()
    assert cpu_model(str(tmp_path / 'absent')) == fallback
    arm = tmp_path / 'arm'
    arm.write_text('processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n')
    assert cpu_model(str(arm)) == fallback


def _git(cwd, *args):
    return subprocess.run(
        ['git', '-c', 'user.name=t', '-c', 'user.email=t@example.com', *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_git_commit_of_a_checkout_and_nothing_elsewhere(tmp_path):
    if shutil.which('git') is None:
        pytest.skip('git is not installed')
    repo = tmp_path / 'repo'
    (repo / 'sub').mkdir(parents=True)
    (repo / 'sub' / 'f.txt').write_text('a')
    _git(repo, 'init', '-q')
    _git(repo, 'add', 'sub/f.txt')
    _git(repo, 'commit', '-q', '-m', 'one')
    head = _git(repo, 'rev-parse', 'HEAD')
    assert len(head) == 40
    assert git_commit(str(repo)) == head
    (repo / 'untracked.txt').write_text('x')  # untracked files do not count
    assert git_commit(str(repo)) == head
    (repo / 'sub' / 'f.txt').write_text('b')
    assert git_commit(str(repo)) == head + '-dirty'
    # a folder inside someone else's checkout, or no checkout at all
    assert git_commit(str(repo / 'sub')) is None
    plain = tmp_path / 'plain'
    plain.mkdir()
    assert git_commit(str(plain)) is None


@pytest.mark.slow
def test_cli_collects_every_case_from_its_child_process(tmp_path):
    """tools/benchmark.py with two cases (tiny inputs): each case's timings
    come back from its child process into one table and one JSON."""
    tool = Path(__file__).resolve().parents[1] / 'tools' / 'benchmark.py'
    out = tmp_path / 'bench.json'
    cases = ['r50_infer_2x512', 'r50_train_2x512']
    proc = subprocess.run(
        [
            sys.executable,
            str(tool),
            '--threads',
            '1',
            '--pairs',
            '15',
            '--warmup',
            '0',
            '--batch-side',
            '32',
            '--cases',
            *cases,
            '--json',
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [c['name'] for c in result['cases']] == cases
    for case in result['cases']:
        assert len(case['a_seconds']) == len(case['b_seconds']) == 15
        assert case['ratio_min'] <= case['ratio_median'] <= case['ratio_max']
        # 15 pairs: the fastest fifth is 3 runs of each side
        fast_a = sum(sorted(case['a_seconds'])[:3]) / 3
        fast_b = sum(sorted(case['b_seconds'])[:3]) / 3
        assert case['ratio_fastest'] == pytest.approx(fast_a / fast_b)
    assert all(name in proc.stdout for name in cases)
    # what produced the figures, each read by the test independently
    env = result['env']
    names = re.findall(
        r'^model name\s*:\s*(.+?)\s*$',
        Path('/proc/cpuinfo').read_text()
        if Path('/proc/cpuinfo').exists()
        else '',
        flags=re.M,
    )
    assert env['cpu'] == (
        names[0] if names else platform.processor() or platform.machine()
    )
    assert env['logical_cores'] == os.cpu_count()
    assert env['threads'] == 1
    assert env['torch'] == torch.__version__
    assert env['python'] == platform.python_version()
    repo = tool.parents[1]
    if shutil.which('git') and (repo / '.git').exists():
        head = _git(repo, 'rev-parse', 'HEAD')
        assert env['commit'] in (head, head + '-dirty')
    date = datetime.datetime.fromisoformat(env['date'])
    now = datetime.datetime.now(datetime.timezone.utc)
    assert date.utcoffset() == datetime.timedelta(0)
    assert datetime.timedelta(0) <= now - date < datetime.timedelta(hours=1)
    assert env['command'].startswith('python ')
    assert env['command'].endswith(f'--json {out}')
    assert '--cases r50_infer_2x512 r50_train_2x512' in env['command']
