"""Converters: official ECANet / timm checkpoints -> ECAResNet, checked for
exact numerical equivalence against an independent functional reference
(tests/reference_resnet.py) on random float64 weights."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator

import pytest
import torch
from mmdet.registry import MODELS
from reference_resnet import (
    TIMM_ARCHS,
    TIMM_K,
    official_state_dict,
    reference_stages,
    rel_err,
    timm_state_dict,
)
from torch import Tensor

import eca_mmdet  # noqa: F401  (registers ECAResNet in mmdet's MODELS)
from eca_mmdet.converters import ConversionError, convert_checkpoint

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / 'tools' / 'convert_weights.py'
# 80x48 makes layer3 5x3, so layer4's stride-2 conv and ceil-mode avg-down see odd sizes
X_SHAPE = (1, 3, 80, 48)
RTOL = 1e-4


@pytest.fixture(autouse=True, scope='module')
def single_thread() -> Iterator[None]:
    """Tiny tensors, shared 2-core machine: one intra-op thread is far faster."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _save_official(sd: Dict[str, Tensor], path: Path) -> None:
    """As the ECANet training script does: DataParallel keys in a dict."""
    torch.save(
        dict(
            epoch=100,
            arch='eca_resnet',
            best_prec1=77.0,
            state_dict={'module.' + k: v for k, v in sd.items()},
        ),
        path,
    )


def _check_equivalent(
    src_sd: Dict[str, Tensor], layout: str, cfg: dict, dst: Path
) -> None:
    """Build ECAResNet(**cfg), load dst strictly, compare C2..C5 to the reference."""
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert ckpt['meta']['backbone'] == cfg and ckpt['meta']['layout'] == layout
    sd = ckpt['state_dict']
    assert not any(k.startswith('fc.') for k in sd)
    src_nbt = any(k.endswith('num_batches_tracked') for k in src_sd)
    assert any(k.endswith('num_batches_tracked') for k in sd) == src_nbt

    model = MODELS.build(
        cfg
    ).double()  # before loading: keep the float64 weights exact
    model.load_state_dict(sd, strict=True)
    model.eval()
    x = torch.randn(
        *X_SHAPE,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        outs = model(x)
        refs = reference_stages(src_sd, x, layout)
    assert len(outs) == len(refs) == 4
    for i, (out, ref) in enumerate(zip(outs, refs)):
        assert out.shape == ref.shape, f'C{i + 2}'
        assert rel_err(out, ref) < RTOL, (
            f'C{i + 2}: rel err {rel_err(out, ref):.3g}'
        )


@pytest.mark.parametrize(
    'depth,ks,nbt',
    [
        (18, (3, 5, 7, 7), False),  # old checkpoints: no num_batches_tracked
        (50, (3, 5, 5, 7), True),
        pytest.param(101, (3, 3, 5, 7), True, marks=pytest.mark.slow),
    ],
)
def test_official(tmp_path: Path, depth: int, ks: tuple, nbt: bool) -> None:
    src_sd = official_state_dict(depth, ks, nbt=nbt, seed=depth)
    src = tmp_path / f'eca_resnet{depth}_k{"".join(map(str, ks))}.pth.tar'
    _save_official(src_sd, src)
    dst = tmp_path / 'out' / 'converted.pth'
    cfg = convert_checkpoint(src, dst)
    assert cfg == dict(type='ECAResNet', depth=depth, eca_k_size=ks)
    meta = torch.load(dst, weights_only=True)['meta']
    assert meta['source'] == src.name and sorted(meta['dropped_keys']) == [
        'fc.bias',
        'fc.weight',
    ]
    _check_equivalent(src_sd, 'official', cfg, dst)


# safetensors for one standard and one pruned arch (those without running counters)
SAFETENSORS = {'ecaresnet50t', 'ecaresnet50d_pruned'}


# the deepest archs only take longer: the same code, in the slow tier
DEEP = {
    'ecaresnet101d',
    'ecaresnet101d_pruned',
    'ecaresnet200d',
    'ecaresnet269d',
}


@pytest.mark.parametrize(
    'arch',
    [
        pytest.param(a, marks=pytest.mark.slow) if a in DEEP else a
        for a in TIMM_ARCHS
    ],
)
def test_timm(tmp_path: Path, arch: str) -> None:
    src_sd = timm_state_dict(arch, nbt=arch not in SAFETENSORS, seed=len(arch))
    if arch in SAFETENSORS:
        pytest.importorskip('safetensors', reason='safetensors is optional')
        from safetensors.torch import save_file

        src = tmp_path / f'{arch}.safetensors'
        save_file(src_sd, str(src))
    else:
        src = tmp_path / f'{arch}.pth'
        torch.save(src_sd, src)
    dst = tmp_path / 'converted.pth'
    cfg = convert_checkpoint(src, dst)
    assert cfg == dict(type='ECAResNet', arch=arch, eca_k_size=TIMM_K)
    del (
        src_sd['fc.weight'],
        src_sd['fc.bias'],
    )  # the reference forward ignores them anyway
    _check_equivalent(src_sd, 'timm', cfg, dst)


def test_timm_kernels_read_per_stage(tmp_path: Path) -> None:
    src = tmp_path / 'k3793.pth'
    torch.save(
        timm_state_dict('ecaresnet26t', ks=(3, 7, 9, 3), seed=7, fc=False), src
    )
    cfg = convert_checkpoint(src, tmp_path / 'k3793_mmdet.pth')
    assert cfg == dict(
        type='ECAResNet', arch='ecaresnet26t', eca_k_size=(3, 7, 9, 3)
    )


def test_timm_generic_config(tmp_path: Path) -> None:
    """A timm-layout net that is no known arch (other stem widths and block
    counts) gets a generic config, still numerically exact."""
    src_sd = timm_state_dict(
        'ecaresnet50d',
        ks=(3, 7, 9, 3),
        seed=8,
        fc=False,
        blocks=(1, 2, 1, 1),
        stem=(16, 48, 64),
    )
    src = tmp_path / 'custom.pth'
    torch.save(src_sd, src)
    dst = tmp_path / 'custom_mmdet.pth'
    cfg = convert_checkpoint(src, dst)
    assert cfg == dict(
        type='ECAResNet',
        depth=50,
        stage_blocks=(1, 2, 1, 1),
        deep_stem=True,
        stem_mid_channels=(16, 48),
        avg_down=True,
        eca_k_size=(3, 7, 9, 3),
    )
    _check_equivalent(src_sd, 'timm', cfg, dst)


def test_pruned_widths_match_timm_facts() -> None:
    """Spot facts from timm 1.0.31's _pruned/*.txt (layer shapes, fc input)."""
    from reference_resnet import pruned_spec

    stem, stages = pruned_spec('ecaresnet50d_pruned')
    assert stem == (32, 32, 64)
    assert [s['out'] for s in stages] == [19, 171, 818, 2022]
    assert [len(s['blocks']) for s in stages] == [3, 4, 6, 3]
    assert stages[0]['blocks'][0] == (47, 18) and stages[3]['blocks'][2] == (
        512,
        490,
    )
    stem, stages = pruned_spec('ecaresnet101d_pruned')
    assert [s['out'] for s in stages] == [26, 142, 278, 2042]
    assert [len(s['blocks']) for s in stages] == [3, 4, 23, 3]
    assert stages[2]['blocks'][0] == (101, 25) and stages[3]['blocks'][1] == (
        512,
        512,
    )


def test_unknown_layout_refused(tmp_path: Path) -> None:
    plain = {
        k: v
        for k, v in official_state_dict(18, (3, 3, 3, 3)).items()
        if '.eca.' not in k
    }
    src = tmp_path / 'resnet18_no_eca.pth'
    torch.save(plain, src)
    dst = tmp_path / 'never.pth'
    with pytest.raises(
        ConversionError, match=r'resnet18_no_eca\.pth.*no ECA weights'
    ):
        convert_checkpoint(src, dst)
    assert not dst.exists()
    assert issubclass(ConversionError, ValueError)


def test_unrecognised_keys_named(tmp_path: Path) -> None:
    sd = timm_state_dict('ecaresnet26t', seed=3)
    sd['layer2.1.attn_extra.weight'] = torch.zeros(3)
    sd['head.proj.weight'] = torch.zeros(3)
    src = tmp_path / 'odd.pth'
    torch.save(sd, src)
    with pytest.raises(
        ConversionError,
        match=r'odd\.pth: unrecognised keys: '
        r"'layer2\.1\.attn_extra\.weight', 'head\.proj",
    ):
        convert_checkpoint(src, tmp_path / 'never.pth')


def test_wrong_widths_refused(tmp_path: Path) -> None:
    sd = official_state_dict(18, (3, 5, 7, 7), seed=4)
    sd['layer1.1.conv2.weight'] = sd['layer1.1.conv2.weight'][
        :, :32
    ].clone()  # breaks the chain
    src = tmp_path / 'broken.pth.tar'
    _save_official(sd, src)
    with pytest.raises(
        ConversionError,
        match=r"broken\.pth\.tar: 'layer1\.1\.conv2\.weight' "
        r'has shape \(64, 32, 3, 3\), '
        r'expected \[\*, 64, 3, 3\]',
    ):
        convert_checkpoint(src, tmp_path / 'never.pth')


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CLI), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def _load_cli():
    spec = importlib.util.spec_from_file_location('convert_weights', CLI)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


def test_cli_prints_config(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """In-process main() (the subprocess path is exercised by the failure test)."""
    src = tmp_path / 'eca_resnet18.pth.tar'
    _save_official(official_state_dict(18, (3, 5, 7, 7), seed=5), src)
    dst = tmp_path / 'eca_r18_mmdet.pth'
    assert _load_cli().main([str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert 'detected layout: official' in out and dst.is_file()
    snippet = out[out.index('backbone=dict(') :]
    ns: dict = {}
    exec(snippet, ns)  # the printed snippet is valid config Python
    assert ns['backbone'] == dict(
        type='ECAResNet',
        depth=18,
        eca_k_size=(3, 5, 7, 7),
        init_cfg=dict(type='Pretrained', checkpoint=str(dst)),
    )


@pytest.mark.slow
def test_cli_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / 'corrupt.pth'
    bad.write_bytes(b'definitely not a checkpoint')
    res = _run_cli(str(bad), str(tmp_path / 'out.pth'))
    assert res.returncode == 1 and res.stdout == ''
    lines = res.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and 'corrupt.pth' in lines[0]
        and 'Traceback' not in res.stderr
    )
    # missing source, in-process (same main())
    assert (
        _load_cli().main(
            [str(tmp_path / 'missing.pth'), str(tmp_path / 'out.pth')]
        )
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'missing.pth' in err[0]


def test_pretrained_init_cfg_loads_converted(tmp_path: Path) -> None:
    """The printed config works as is: init_cfg=Pretrained loads every tensor."""
    src = tmp_path / 'eca_resnet18.pth.tar'
    _save_official(
        official_state_dict(18, (3, 5, 7, 7), seed=6, dtype=torch.float32), src
    )
    dst = tmp_path / 'eca_r18_mmdet.pth'
    cfg = convert_checkpoint(src, dst)
    model = MODELS.build(
        dict(cfg, init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    )
    model.init_weights()
    want = torch.load(dst, weights_only=True)['state_dict']
    got = model.state_dict()
    assert set(want) == set(got)
    for k, v in want.items():
        assert torch.equal(got[k], v), k


def _official_src(tmp_path: Path) -> Path:
    src = tmp_path / 'eca_resnet18.pth.tar'
    _save_official(official_state_dict(18, (3, 5, 7, 7), seed=9), src)
    return src


def _one_error_line(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 1 and 'Traceback' not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), res.stderr
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize('how', ['same', 'symlink', 'other_path'])
def test_cli_refuses_to_overwrite_its_source(tmp_path: Path, how: str) -> None:
    src = _official_src(tmp_path)
    before = src.read_bytes()
    if how == 'same':
        dst = str(src)
    elif how == 'symlink':
        (tmp_path / 'link.pth').symlink_to(src)
        dst = str(tmp_path / 'link.pth')
    else:
        (tmp_path / 'sub').mkdir()
        dst = str(tmp_path / 'sub' / '..' / src.name)
    line = _one_error_line(_run_cli(str(src), dst))
    assert f'output {dst} is the source checkpoint {src}' in line, line
    assert src.read_bytes() == before


@pytest.mark.slow
def test_cli_output_directory_is_one_line(tmp_path: Path) -> None:
    src = _official_src(tmp_path)
    out = tmp_path / 'out'
    out.mkdir()
    line = _one_error_line(_run_cli(str(src), str(out)))
    assert line.startswith(f'error: output {out} is a directory'), line
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_cli_refuses_pickled_payload_without_unsafe_advice(
    tmp_path: Path,
) -> None:
    """Refused like every other loader (naming the global), and never with
    torch's advice to load with weights_only=False."""
    import os

    class System:
        def __reduce__(self):
            return (os.system, (f'touch {tmp_path / "ran"}',))

    sd = official_state_dict(18, (3, 5, 7, 7), seed=10)
    src = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=sd, extra=System()), src)
    line = _one_error_line(_run_cli(str(src), str(tmp_path / 'out.pth')))
    assert f'refusing to load checkpoint {src}' in line, line
    assert 'posix.system' in line, line
    assert 'weights_only' not in line, line
    assert (
        not (tmp_path / 'ran').exists() and not (tmp_path / 'out.pth').exists()
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    'content,expected',
    [
        (b'', 'is empty (0 bytes)'),
        (b'{"not": "weights"}\n', 'is not a PyTorch checkpoint (a text file'),
    ],
)
def test_cli_empty_or_text_source(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    src = tmp_path / 'weights.pth'
    src.write_bytes(content)
    line = _one_error_line(_run_cli(str(src), str(tmp_path / 'out.pth')))
    assert line.startswith(f'error: checkpoint {src} {expected}'), line


def _minimal_safetensors(path: Path) -> None:
    """One float32 tensor in the safetensors layout (u64 header length, JSON
    header, data), written by hand."""
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    path.write_bytes(
        len(header).to_bytes(8, 'little') + header + b'\x00\x00\x80\x3f'
    )


def test_safetensors_without_the_package_is_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """safetensors is optional (a stock MMDetection environment lacks it):
    the converter says how to get it, in one line, and writes nothing."""
    src = tmp_path / 'timm.safetensors'
    _minimal_safetensors(src)
    # None in sys.modules makes `import safetensors...` raise ImportError
    monkeypatch.setitem(sys.modules, 'safetensors', None)
    monkeypatch.setitem(sys.modules, 'safetensors.torch', None)
    dst = tmp_path / 'out.pth'
    assert _load_cli().main([str(src), str(dst)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(src) in err[0] and 'pip install safetensors' in err[0]
    assert not dst.exists()
