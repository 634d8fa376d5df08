"""The command lines: one error path (one ``error:`` line, exit status 1,
``ECA_MMDET_DEBUG=1`` for the traceback) and one name per option, mmdet's
where mmdet has the option, the older spellings still accepted."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip('mmdet')

from eca_mmdet.apis import export  # noqa: E402
from eca_mmdet.apis.common import CliArgumentParser, run_cli  # noqa: E402
from eca_mmdet.engine import EcaMmdetError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _tool(path):
    """The module of a script under tools/ or demo/."""
    name = 'cli_' + re.sub(r'\W', '_', path)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def _shown(option, text):
    """Whether ``option`` appears in ``text`` as an option of its own."""
    return re.search(rf'(?<![\w-]){re.escape(option)}(?![\w-])', text)


# (script, arguments both spellings share, older spelling, current one)
RENAMED = [
    (
        'tools/visualize.py',
        ['c.py', 'k.pth', 'a.png', '--out-dir', 'o'],
        ['--score-thr', '0.2'],
        ['--pred-score-thr', '0.2'],
    ),
    (
        'tools/progress_gif.py',
        ['c.py', 'work', 'a.png', '--out', 'x.gif'],
        ['--size', '80', '--score-thr', '0.2'],
        ['--cell-size', '80', '--pred-score-thr', '0.2'],
    ),
    (
        'tools/eca_attention.py',
        ['c.py', 'k.pth', '--images', 'a.png'],
        ['--out', 'o', '--score-thr', '0.2'],
        ['--out-dir', 'o', '--pred-score-thr', '0.2'],
    ),
    (
        'tools/make_shapes_dataset.py',
        ['data'],
        ['--size', '96'],
        ['--img-size', '96'],
    ),
    (
        'tools/extract_pruned_widths.py',
        ['timm.whl'],
        ['-o', 'x.json'],
        ['--out', 'x.json'],
    ),
    (
        'tools/benchmark.py',
        [],
        ['--size', '64', '96', '--det-size', '64', '96', '--batch-size', '32'],
        [
            '--shape',
            '64',
            '96',
            '--det-shape',
            '64',
            '96',
            '--batch-side',
            '32',
        ],
    ),
]


@pytest.mark.parametrize(
    'script,common,old,new', RENAMED, ids=[r[0] for r in RENAMED]
)
def test_old_flag_spellings_still_work_and_are_hidden(
    script, common, old, new
):
    parser = _tool(script).build_parser()
    assert isinstance(parser, CliArgumentParser)
    assert vars(parser.parse_args(common + old)) == vars(
        parser.parse_args(common + new)
    )
    help_text = parser.format_help()
    for option in old:
        if option.startswith('-'):
            assert not _shown(option, help_text), (option, help_text)
    for option in new:
        if option.startswith('-'):
            assert _shown(option, help_text), (option, help_text)


def test_a_required_option_may_be_given_by_its_alias(capsys):
    parser = _tool('tools/eca_attention.py').build_parser()
    common = ['c.py', 'k.pth', '--images', 'a.png']
    assert parser.parse_args(common + ['--out', 'o']).out_dir == 'o'
    with pytest.raises(SystemExit) as info:
        parser.parse_args(common)
    assert info.value.code == 1
    assert 'the following arguments are required: --out-dir' in (
        capsys.readouterr().err
    )


def test_mmdet_names_for_mmdet_options():
    """The demo and the rendering tools take mmdet's demo/image_demo.py
    names for the same options."""
    demo = _tool('demo/image_demo.py').build_parser().format_help()
    for option in ('--weights', '--out-dir', '--device', '--pred-score-thr'):
        assert _shown(option, demo), option
    assert _shown('--batch-size', demo)
    for script in ('tools/visualize.py', 'tools/progress_gif.py'):
        text = _tool(script).build_parser().format_help()
        assert _shown('--pred-score-thr', text), script
        assert _shown('--device', text), script


def _one_error_line(capsys):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert 'Traceback' not in captured.err, captured.err
    assert len(lines) == 1 and lines[0].startswith('error: '), captured.err
    return lines[0]


def _run_tool(script, argv):
    module = _tool(script)
    if script == 'tools/benchmark.py':  # its main takes parsed arguments
        return run_cli(module.main, module.build_parser(), argv)
    return module.main(argv)


def test_bad_input_is_one_line_in_every_tool(tmp_path, capsys):
    not_a_wheel = tmp_path / 'timm.whl'
    not_a_wheel.write_text('not a zip file\n')
    cases = [
        (
            'tools/model_stats.py',
            [str(tmp_path / 'missing.py')],
            f'error: config file not found: {tmp_path / "missing.py"}',
        ),
        (
            'tools/benchmark.py',
            ['--cases', 'r50_nope'],
            'error: --cases: unknown case(s) r50_nope; known: ',
        ),
        (
            'tools/make_shapes_dataset.py',
            [str(tmp_path / 'shapes'), '--img-size', '10'],
            'error: --img-size must be at least 48, got 10',
        ),
        (
            'tools/make_shapes_dataset.py',
            [str(tmp_path / 'shapes'), '--train', '-1'],
            'error: --train must be >= 0, got -1',
        ),
        (
            'tools/extract_pruned_widths.py',
            [str(tmp_path / 'nope.whl'), '--out', str(tmp_path / 'w.json')],
            f'error: timm wheel or directory not found: {tmp_path}/nope.whl',
        ),
        (
            'tools/extract_pruned_widths.py',
            [str(not_a_wheel), '--out', str(tmp_path / 'w.json')],
            f'error: cannot read the pruned widths from {not_a_wheel}: '
            'BadZipFile: File is not a zip file',
        ),
        (
            'tools/convert_weights.py',
            [str(tmp_path / 'nope.pth'), str(tmp_path / 'out.pth')],
            'nope.pth',
        ),
    ]
    for script, argv, expected in cases:
        assert _run_tool(script, argv) == 1, script
        line = _one_error_line(capsys)
        assert line.startswith(expected) or (
            not expected.startswith('error:') and expected in line
        ), (script, line)
    assert not (tmp_path / 'shapes').exists()
    assert not (tmp_path / 'w.json').exists()
    assert not (tmp_path / 'out.pth').exists()


def test_export_cli_is_on_the_same_error_path(tmp_path, capsys):
    out = tmp_path / 'x.onnx'
    argv = ['c.py', '--out', str(out), '--shape', '16', '320']
    assert export.main(argv) == 1
    line = _one_error_line(capsys)
    assert line == 'error: --shape and --check-shape must be at least 32'
    # a --cfg-options item without '=' is named, as in train and test
    argv = ['c.py', '--out', str(out), '--cfg-options', 'model.depth']
    assert export.main(argv) == 1
    assert "--cfg-options 'model.depth': expected KEY=VALUE" in (
        _one_error_line(capsys)
    )
    assert not out.exists()


@pytest.mark.parametrize(
    'script,argv',
    [
        ('tools/make_shapes_dataset.py', ['shapes', '--img-size', '10']),
        ('tools/benchmark.py', ['--cases', 'r50_nope']),
    ],
)
def test_debug_variable_shows_the_traceback(
    script, argv, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('ECA_MMDET_DEBUG', '1')
    with pytest.raises(EcaMmdetError):
        _run_tool(script, argv)


def test_usage_errors_exit_with_status_1(capsys):
    for script in (
        'tools/make_shapes_dataset.py',
        'tools/model_stats.py',
        'tools/convert_weights.py',
        'tools/extract_pruned_widths.py',
    ):
        with pytest.raises(SystemExit) as info:
            _run_tool(script, ['--no-such-option'])
        assert info.value.code == 1, script
        err = capsys.readouterr().err
        assert err.startswith('usage: ') and f'{script}: error: ' in err
