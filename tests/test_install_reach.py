"""Installing eca-mmdet into a working MMDetection environment adds this
package and changes nothing else.

pip resolves the package's requirements against the environment running the
tests (torch, numpy, mmcv, mmengine, mmdet as installed) without an index:
any requirement the environment does not already satisfy would show up in
pip's report as another package to install or upgrade. Run on each tested
stack (torch 2.13 + numpy 2, torch 2.1 + numpy 1), this is the check that a
user's torch, numpy or mmcv is never replaced.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _canonical(name):
    return name.lower().replace('_', '-').replace('.', '-')


def test_install_into_existing_environment_adds_only_this_package(tmp_path):
    report = tmp_path / 'report.json'
    cmd = [
        sys.executable,
        '-m',
        'pip',
        'install',
        '--dry-run',
        '--no-index',
        '--no-build-isolation',
        '--quiet',
        '--report',
        str(report),
        str(REPO),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and 'no such option' in result.stderr:
        pytest.skip('pip too old for --dry-run --report')
    assert result.returncode == 0, result.stderr[-3000:]
    to_install = sorted(
        '{} {}'.format(
            _canonical(item['metadata']['name']), item['metadata']['version']
        )
        for item in json.loads(report.read_text())['install']
    )
    assert [name.split()[0] for name in to_install] == ['eca-mmdet'], (
        f'installing eca-mmdet would also install or upgrade: {to_install}'
    )
