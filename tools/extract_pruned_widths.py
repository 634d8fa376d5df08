#!/usr/bin/env python
"""Regenerate ``eca_mmdet/models/pruned_widths.json`` from timm's pruning specs.

timm ships the channel widths of its pruned ECA-ResNets as text files
(``timm/models/_pruned/ecaresnet{50d,101d}_pruned.txt``: ``key:[shape]``
entries separated by ``***``).  This script reads them from a timm wheel (or
an unpacked timm tree) and writes the compact description used by
``ECAResNet(arch='ecaresnet50d_pruned' | 'ecaresnet101d_pruned')``::

    pip download timm --no-deps -d /tmp/timm_wheel
    python tools/extract_pruned_widths.py /tmp/timm_wheel/timm-*.whl

No timm import is needed (nor wanted): only the two text files are read.
Bad input is one ``error: ...`` line and exit status 1.

Output format, per arch::

    {"source": "timm <version> timm/models/_pruned/<arch>.txt",
     "stem": [mid0, mid1, out],          # deep stem conv widths
     "eca_k_size": [k1, k2, k3, k4],     # ECA Conv1d kernel per stage
     "stages": [{"out": C,               # conv3 / stage output channels
                 "blocks": [[conv1_out, conv2_out], ...]}, ...]}
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from pathlib import Path

# Allow running from a source checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eca_mmdet.apis.common import CliArgumentParser, run_cli  # noqa: E402
from eca_mmdet.engine.atomic_io import atomic_write  # noqa: E402
from eca_mmdet.engine.errors import EcaMmdetError, first_line  # noqa: E402
from eca_mmdet.engine.paths import refuse_overwriting_inputs  # noqa: E402

ARCHS = ('ecaresnet50d_pruned', 'ecaresnet101d_pruned')
DEFAULT_OUT = (
    Path(__file__).resolve().parents[1]
    / 'eca_mmdet'
    / 'models'
    / 'pruned_widths.json'
)
_BLOCK = re.compile(r'^layer(\d)\.(\d+)\.(.+)$')


def parse_spec(text: str) -> dict[str, list[int]]:
    """Parse timm's ``key:[d0, d1, ...]***...`` format into ``{key: shape}``."""
    shapes: dict[str, list[int]] = {}
    for item in text.strip().split('***'):
        if not item.strip():
            continue
        key, _, shape = item.partition(':')
        dims = shape.strip()[1:-1]
        shapes[key.strip()] = (
            [int(d) for d in dims.split(',')] if dims.strip() else []
        )
    return shapes


def describe(shapes: dict[str, list[int]], source: str) -> dict:
    """Reduce a pruned ResNet spec to stem / per-stage / per-block widths."""
    stem = [
        shapes['conv1.0.weight'][0],
        shapes['conv1.3.weight'][0],
        shapes['conv1.6.weight'][0],
    ]
    if shapes['bn1.weight'] != [stem[2]]:
        raise ValueError(
            f'{source}: bn1 width {shapes["bn1.weight"]} != stem out {stem[2]}'
        )
    stages: list[dict] = []
    ks: list[int] = []
    in_ch = stem[2]
    for s in range(1, 5):
        ids = [
            int(m.group(2))
            for m in map(_BLOCK.match, shapes)
            if m and m.group(1) == str(s)
        ]
        n_blocks = 1 + max(ids)
        out = shapes[f'layer{s}.0.conv3.weight'][0]
        blocks: list[list[int]] = []
        stage_k: set[int] = set()
        for b in range(n_blocks):
            p = f'layer{s}.{b}.'
            c1, c2, c3 = (shapes[p + f'conv{i}.weight'] for i in (1, 2, 3))
            if (
                c1[1] != in_ch
                or c2[1] != c1[0]
                or c3[1] != c2[0]
                or c3[0] != out
            ):
                raise ValueError(
                    f'{source}: inconsistent channel chain in {p}'
                )
            for i, c in ((1, c1), (2, c2), (3, c3)):
                if shapes[p + f'bn{i}.weight'] != [c[0]]:
                    raise ValueError(
                        f'{source}: {p}bn{i} does not match conv{i}'
                    )
            if b == 0 and shapes[p + 'downsample.1.weight'][:2] != [
                out,
                in_ch,
            ]:
                raise ValueError(f'{source}: bad downsample shape in {p}')
            stage_k.add(shapes[p + 'se.conv.weight'][-1])
            blocks.append([c1[0], c2[0]])
            in_ch = out
        if len(stage_k) != 1:
            raise ValueError(
                f'{source}: stage {s} mixes ECA kernel sizes {sorted(stage_k)}'
            )
        ks.append(stage_k.pop())
        stages.append({'out': out, 'blocks': blocks})
    if 'fc.weight' in shapes and shapes['fc.weight'][1] != in_ch:
        raise ValueError(
            f'{source}: fc input {shapes["fc.weight"][1]} != last stage out {in_ch}'
        )
    return {'source': source, 'stem': stem, 'eca_k_size': ks, 'stages': stages}


def read_specs(src: Path) -> tuple[str, dict[str, str]]:
    """Return (timm version, {arch: spec text}) from a wheel file or a directory."""
    texts: dict[str, str] = {}
    version = 'unknown'
    if src.is_file():
        with zipfile.ZipFile(src) as zf:
            for name in zf.namelist():
                for arch in ARCHS:
                    if name.endswith(f'timm/models/_pruned/{arch}.txt'):
                        texts[arch] = zf.read(name).decode('utf-8')
                if name.endswith('timm/version.py'):
                    version = _version(zf.read(name).decode('utf-8'))
    else:
        for arch in ARCHS:
            hits = sorted(src.rglob(f'_pruned/{arch}.txt'))
            if hits:
                texts[arch] = hits[0].read_text('utf-8')
        vfiles = sorted(src.rglob('timm/version.py')) or sorted(
            src.glob('version.py')
        )
        if vfiles:
            version = _version(vfiles[0].read_text('utf-8'))
    missing = [a for a in ARCHS if a not in texts]
    if missing:
        raise FileNotFoundError(
            f'{src}: no timm/models/_pruned/{{{",".join(missing)}}}.txt found'
        )
    return version, texts


def _version(text: str) -> str:
    m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text)
    return m.group(1) if m else 'unknown'


def render(data: dict[str, dict]) -> str:
    """JSON with one line per stage, so the file stays short and diffable."""
    lines = ['{']
    for i, (arch, d) in enumerate(data.items()):
        lines.append(f'  {json.dumps(arch)}: {{')
        for key in ('source', 'stem', 'eca_k_size'):
            lines.append(f'    {json.dumps(key)}: {json.dumps(d[key])},')
        lines.append('    "stages": [')
        stages = [f'      {json.dumps(st)}' for st in d['stages']]
        lines.append(',\n'.join(stages))
        lines.append('    ]')
        lines.append('  }' + (',' if i < len(data) - 1 else ''))
    lines.append('}')
    return '\n'.join(lines) + '\n'


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    ap = CliArgumentParser(
        prog='tools/extract_pruned_widths.py',
        description=__doc__.split('\n\n')[0],
    )
    ap.add_argument(
        'src', type=Path, help='timm wheel (.whl) or unpacked timm directory'
    )
    ap.add_argument(
        '--out',
        type=Path,
        default=DEFAULT_OUT,
        aliases=['-o'],
        help=f'output JSON (default {DEFAULT_OUT})',
    )
    return ap


def extract(args: argparse.Namespace) -> int:
    """Read the specs of ``args.src`` and write ``args.out``."""
    if not args.src.exists():
        raise EcaMmdetError(f'timm wheel or directory not found: {args.src}')
    refuse_overwriting_inputs({'--out': args.out}, {'timm source': args.src})
    try:
        version, texts = read_specs(args.src)
        data = {
            arch: describe(
                parse_spec(texts[arch]),
                f'timm {version} timm/models/_pruned/{arch}.txt',
            )
            for arch in ARCHS
        }
    except (
        OSError,
        ValueError,
        KeyError,
        IndexError,
        zipfile.BadZipFile,
    ) as e:
        raise EcaMmdetError(
            f'cannot read the pruned widths from {args.src}: '
            f'{type(e).__name__}: {first_line(e)}'
        ) from None
    text = render(data)
    json.loads(text)  # sanity: the hand-rendered text is valid JSON
    atomic_write(text, str(args.out))
    print(f'wrote {args.out}')
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (1 after one ``error:`` line
    for bad input)."""
    return run_cli(extract, build_parser(), argv)


if __name__ == '__main__':
    sys.exit(main())
