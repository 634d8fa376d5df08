"""Reliability, round 3 (fast cases, no training): no tool writes over what
it reads, and no result is silently wrong.

The slow cases (trained checkpoints, tools/train.py and tools/test.py end
to end) are in test_reliability_round3_tools.py.
"""

import copy
import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tools_testlib import REPO, SHAPES_CONFIG, run_script, run_tool


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _one_error(proc, *parts: str) -> str:
    """The single ``error:`` line of a failed tool run, holding ``parts``."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in lines if ln.startswith('error: ')]
    assert len(errors) == 1, proc.stderr[-3000:]
    for part in parts:
        assert part in errors[0], errors[0]
    return errors[0]


def _png(path: Path, size=(32, 24), color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', size, color).save(path)
    return path


# --- 1. the one output guard ------------------------------------------------


def test_guard_refuses_an_output_that_is_an_input(tmp_path):
    from eca_mmdet.engine import OutputPathError, refuse_overwriting_inputs

    ckpt = tmp_path / 'model.pth'
    ckpt.write_bytes(b'weights')
    (tmp_path / 'link.pth').symlink_to(ckpt)
    (tmp_path / 'sub').mkdir()
    for out in (
        ckpt,
        tmp_path / 'link.pth',
        tmp_path / 'sub' / '..' / 'model.pth',
    ):
        with pytest.raises(OutputPathError) as info:
            refuse_overwriting_inputs({'--out': out}, {'checkpoint': ckpt})
        assert str(info.value).startswith(
            f'--out {out} is the checkpoint {ckpt}'
        ), info.value
    refuse_overwriting_inputs({'--out': tmp_path / 'x.onnx'}, {'ckpt': ckpt})


def test_guard_refuses_an_output_directory_holding_inputs(tmp_path):
    from eca_mmdet.engine import OutputPathError, refuse_overwriting_inputs

    image = _png(tmp_path / 'val' / 'a.png')
    with pytest.raises(OutputPathError, match='--show-dir .* holds the image'):
        refuse_overwriting_inputs(
            (), {'image': [image]}, output_dirs={'--show-dir': image.parent}
        )
    with pytest.raises(OutputPathError, match='is the image directory'):
        refuse_overwriting_inputs(
            (),
            {'image directory': str(image.parent) + '/'},
            output_dirs={'--show-dir': image.parent},
        )
    # writing beside or below the images replaces none of them
    refuse_overwriting_inputs(
        (),
        {'image': [image], 'image directory': image.parent},
        output_dirs={'--show-dir': [tmp_path, image.parent / 'vis']},
    )


def test_guard_refuses_an_output_below_a_file_or_of_the_wrong_kind(tmp_path):
    from eca_mmdet.engine import OutputPathError, refuse_overwriting_inputs

    ckpt = tmp_path / 'model.pth'
    ckpt.write_bytes(b'weights')
    with pytest.raises(OutputPathError, match=f'{ckpt} is a file, so'):
        refuse_overwriting_inputs({'--out': ckpt / 'deeper' / 'x.onnx'}, {})
    with pytest.raises(OutputPathError, match='is a directory; give a file'):
        refuse_overwriting_inputs({'--out': tmp_path}, {})
    with pytest.raises(OutputPathError, match='is a file, not a directory'):
        refuse_overwriting_inputs((), {}, output_dirs={'--out-dir': ckpt})


def test_export_refuses_out_over_its_checkpoint(tmp_path):
    """export_onnx.py --out CKPT used to replace the checkpoint with the
    ONNX file and print OK."""
    ckpt = tmp_path / 'epoch_12.pth'
    torch.save({'state_dict': {}}, ckpt)
    before = _digest(ckpt)
    proc = run_tool(
        ['export_onnx.py', SHAPES_CONFIG, ckpt, '--out', ckpt], cwd=tmp_path
    )
    _one_error(proc, f'--out {ckpt} is the checkpoint {ckpt}')
    assert _digest(ckpt) == before
    proc = run_tool(
        ['export_onnx.py', SHAPES_CONFIG, ckpt, '--out', ckpt / 'm.onnx'],
        cwd=tmp_path,
    )
    _one_error(proc, f'{ckpt} is a file')


def test_demo_refuses_vis_over_its_input_images(tmp_path):
    """demo --out-dir DIR whose vis/ is the input folder used to replace
    the images with renderings."""
    image = _png(tmp_path / 'out' / 'vis' / 'a.png')
    before = _digest(image)
    weights = tmp_path / 'w.pth'
    weights.write_bytes(b'not read before the guard')
    proc = run_script(
        'demo/image_demo.py',
        image.parent,
        SHAPES_CONFIG,
        '--weights',
        weights,
        '--out-dir',
        tmp_path / 'out',
        cwd=tmp_path,
    )
    _one_error(proc, f'--out-dir {image.parent}', f'holds the image {image}')
    assert _digest(image) == before


def test_visualize_refuses_out_dir_of_its_images(tmp_path):
    image = _png(tmp_path / 'imgs' / 'a.png')
    before = _digest(image)
    weights = tmp_path / 'w.pth'
    weights.write_bytes(b'not read before the guard')
    proc = run_tool(
        [
            'visualize.py',
            SHAPES_CONFIG,
            weights,
            image.parent,
            '--out-dir',
            image.parent,
        ],
        cwd=tmp_path,
    )
    _one_error(proc, f'--out-dir {image.parent} holds the image')
    assert _digest(image) == before


def test_progress_gif_refuses_out_over_a_checkpoint(tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    ckpt = work / 'epoch_1.pth'
    ckpt.write_bytes(b'weights')
    image = _png(tmp_path / 'a.png')
    proc = run_tool(
        ['progress_gif.py', SHAPES_CONFIG, work, image, '--out', ckpt],
        cwd=tmp_path,
    )
    _one_error(proc, f'--out {ckpt} is the checkpoint')
    assert ckpt.read_bytes() == b'weights'


def test_extract_pruned_widths_refuses_out_over_its_source(tmp_path):
    src = tmp_path / 'timm.whl'
    src.write_bytes(b'wheel')
    proc = run_tool(
        ['extract_pruned_widths.py', src, '--out', src], cwd=tmp_path
    )
    _one_error(proc, f'--out {src} is the timm source {src}')
    assert src.read_bytes() == b'wheel'


def test_benchmark_checks_json_before_timing(tmp_path):
    """A --json below a file used to fail with a traceback after the whole
    benchmark had run."""
    blocker = tmp_path / 'results'
    blocker.write_text('a file')
    proc = run_tool(
        ['benchmark.py', '--cases', 'no_such_case', '--json', blocker / 'x'],
        cwd=tmp_path,
    )
    _one_error(proc, f'--json {blocker / "x"}: {blocker} is a file')


def test_converter_guard_is_the_shared_one(tmp_path):
    from eca_mmdet.converters import check_output_path
    from eca_mmdet.engine import OutputPathError

    src = tmp_path / 'src.pth'
    src.write_bytes(b'x')
    with pytest.raises(OutputPathError, match='is the source checkpoint'):
        check_output_path(src, src)


# --- plot_curves ------------------------------------------------------------


def _scalars(work: Path, stamp: str, lines) -> Path:
    path = work / stamp / 'vis_data' / 'scalars.json'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        ''.join(
            ln if isinstance(ln, str) else json.dumps(ln) + '\n'
            for ln in lines
        )
    )
    return path


def _train_line(epoch, it, loss):
    return dict(epoch=epoch, iter=it, lr=0.01, loss=loss, loss_cls=loss / 2)


def test_curves_keep_one_colour_per_run(tmp_path, monkeypatch):
    """Run 1 without a metric that run 2 has: run 2's curve used to take
    run 1's colour (matplotlib's colour cycle restarts per panel)."""
    from matplotlib.figure import Figure

    from eca_mmdet.visualization.curves import plot_curves, read_run_curves

    a, b = tmp_path / 'a', tmp_path / 'b'
    _scalars(
        a, 't1', [_train_line(1, 1, 1.0), {'coco/bbox_mAP': 0.1, 'step': 1}]
    )
    _scalars(
        b,
        't1',
        [_train_line(1, 1, 2.0), {'coco/segm_mAP': 0.2, 'step': 1}],
    )
    figures = []
    real_savefig = Figure.savefig

    def savefig(self, *args, **kwargs):
        figures.append(self)
        return real_savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, 'savefig', savefig)
    runs = [read_run_curves(a), read_run_curves(b)]
    plot_curves(runs, str(tmp_path / 'c.png'))
    colours = {}
    for ax in figures[0].axes:
        for line in ax.get_lines():
            if line.get_label() in ('a', 'b'):
                colours.setdefault(line.get_label(), set()).add(
                    line.get_color()
                )
    assert colours['a'] != colours['b'], colours
    assert all(len(c) == 1 for c in colours.values()), colours


def test_curves_never_merge_a_fresh_run_with_an_older_one(tmp_path):
    work = tmp_path / 'w'
    _scalars(
        work, '20260101_000000', [_train_line(e, e, 5.0) for e in (1, 2, 3)]
    )
    _scalars(work, '20260102_000000', [_train_line(1, 1, 1.0)])
    from eca_mmdet.visualization.curves import read_run_curves

    run = read_run_curves(str(work))
    assert run.train['loss'] == {1: 1.0}
    assert any('20260101_000000' in n and 'older run' in n for n in run.notes)
    # a resumed run (first line after epoch 1) continues the older one
    resumed = tmp_path / 'r'
    _scalars(
        resumed, '20260101_000000', [_train_line(e, e, 5.0) for e in (1, 2)]
    )
    _scalars(resumed, '20260102_000000', [_train_line(3, 3, 1.0)])
    run = read_run_curves(str(resumed))
    assert run.train['loss'] == {1: 5.0, 2: 5.0, 3: 1.0} and not run.notes


def test_curves_show_nan_losses_and_truncated_lines(tmp_path):
    from eca_mmdet.visualization.curves import read_run_curves

    work = tmp_path / 'w'
    _scalars(
        work,
        't1',
        [
            _train_line(1, 1, 1.0),
            '{"epoch": 1, "iter": 2, "lr": 0.01, "loss": NaN}\n',
            _train_line(2, 3, 0.5),
            '{"epoch": 2, "iter": 4, "lo',
        ],
    )
    run = read_run_curves(str(work))
    assert np.isnan(run.train['loss'][1]) and run.train['loss'][2] == 0.5
    assert run.nonfinite == {'loss': [1]}
    notes = ' | '.join(run.notes)
    assert 'line 4' in notes and 'not JSON' in notes
    assert 'loss was NaN or infinite in epoch(s) 1' in notes


def test_plot_curves_out_errors_are_one_line(tmp_path):
    work = tmp_path / 'w'
    scalars = _scalars(work, 't1', [_train_line(1, 1, 1.0)])
    proc = run_tool(['plot_curves.py', work, '--out', tmp_path], cwd=tmp_path)
    _one_error(proc, f'--out {tmp_path} is a directory')
    before = _digest(scalars)
    proc = run_tool(['plot_curves.py', work, '--out', scalars], cwd=tmp_path)
    _one_error(proc, f'--out {scalars} is the log')
    assert _digest(scalars) == before


# --- attention tool ---------------------------------------------------------


def test_attention_second_run_leaves_no_figure_of_the_first(tmp_path):
    from eca_mmdet.apis.attention import write_outputs
    from eca_mmdet.visualization.attention import GateSet

    gates = {'layer1.0': np.random.RandomState(0).rand(4, 8).astype('f4')}
    files = [f'{i}.png' for i in range(4)]
    with_classes = GateSet(
        ['layer1.0'],
        gates,
        np.arange(4),
        files,
        ['a', 'b'],
        np.array([[1, 0], [0, 1], [1, 1], [0, 1]], bool),
    )
    first = write_outputs(with_classes, str(tmp_path))
    assert os.path.isfile(first['paths']['heatmap'])
    without = GateSet(['layer1.0'], gates, np.arange(4), files)
    second = write_outputs(without, str(tmp_path))
    assert 'heatmap' not in second['paths']
    assert not (tmp_path / 'class_offsets.png').exists()


def test_attention_warns_about_annotations_of_other_classes(capsys):
    from eca_mmdet.apis.attention import _warn_other_classes

    _warn_other_classes('ann.json', ['cat', 'dog'], ['circle', 'square'], 'c')
    err = capsys.readouterr().err
    assert err.startswith('warning: --ann ann.json has 2 of 2 classes'), err
    _warn_other_classes('ann.json', ['circle'], ['circle', 'square'], 'c')
    assert capsys.readouterr().err == ''


# --- 2./3. annotation files -------------------------------------------------


def _coco_file(tmp_path: Path, boxes, categories=None, name='ann.json'):
    images = [dict(id=1, file_name='a.png', width=64, height=48)]
    categories = categories or [dict(id=3, name='x'), dict(id=1, name='y')]
    anns = [
        dict(
            id=i + 1,
            image_id=1,
            category_id=3,
            bbox=box,
            area=max(box[2] * box[3], 0),
            iscrowd=0,
            segmentation=[[10, 10, 30, 10, 30, 30, 10, 30]],
        )
        for i, box in enumerate(boxes)
    ]
    path = tmp_path / name
    path.write_text(
        json.dumps(
            dict(images=images, annotations=anns, categories=categories)
        )
    )
    return path


@pytest.mark.parametrize('width', [0, 0.5])
def test_degenerate_boxes_follow_one_rule(tmp_path, width):
    """0 px used to stop evaluation (and training's --check) while 0.5 px
    only warned: both are counted, named with the file and scored."""
    from eca_mmdet.datasets.coco_check import check_coco_file

    path = _coco_file(tmp_path, [[10, 10, width, 20]])
    report = check_coco_file(
        str(path), test_mode=True, eval_mask=True, classes=('x', 'y')
    )
    assert report.skipped == {'tiny_scored': [1]}
    assert report.scored_images == {1}  # a segm evaluation is not blocked
    (line,) = report.warnings()
    assert line.startswith(f'{path}: 1 of 1 annotations') and 'ids 1' in line


def test_negative_width_is_named_as_such(tmp_path):
    from eca_mmdet.datasets.coco_check import check_coco_file

    path = _coco_file(tmp_path, [[10, 10, -4, 20]])
    report = check_coco_file(str(path))
    assert report.skipped == {'negative_box': [1]}
    assert 'negative width or height' in report.warnings()[0]


def test_classes_in_another_order_than_the_categories_are_refused(tmp_path):
    """mmdet numbers labels in the file's order (pycocotools getCatIds):
    classes in another order would name every prediction after another."""
    from pycocotools.coco import COCO

    from eca_mmdet.datasets.coco_check import AnnotationError, check_coco_file

    path = _coco_file(tmp_path, [[10, 10, 20, 20]])
    coco = COCO(str(path))  # the reference: the order mmdet gets
    assert coco.getCatIds(catNms=['y', 'x']) == [3, 1]
    with pytest.raises(AnnotationError) as info:
        check_coco_file(str(path), classes=('y', 'x'))
    assert "list metainfo.classes as ('x', 'y')" in str(info.value)
    check_coco_file(str(path), classes=('x', 'y'))
    check_coco_file(str(path), classes=('y',))


def test_exif_rotated_images_are_reported(tmp_path):
    from eca_mmdet.datasets.coco_check import check_coco_file

    img_dir = tmp_path / 'val'
    img_dir.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # turned by 90 degrees when loaded
    Image.new('RGB', (64, 48)).save(img_dir / 'a.jpg', exif=exif.tobytes())
    path = _coco_file(tmp_path, [[10, 10, 20, 20]])
    data = json.loads(path.read_text())
    data['images'][0]['file_name'] = 'a.jpg'  # annotated as stored: 64x48
    path.write_text(json.dumps(data))
    report = check_coco_file(
        str(path), test_mode=True, img_dir=str(img_dir), read_images=True
    )
    assert report.exif_oriented == [(str(img_dir / 'a.jpg'), 6, True)]
    line = report.warnings()[-1]
    assert 'EXIF orientation' in line and 'likely misplaced' in line
    report = check_coco_file(
        str(path),
        test_mode=True,
        img_dir=str(img_dir),
        read_images=True,
        exif_orientation=False,  # color_type='color_ignore_orientation'
    )
    assert report.exif_oriented == [] and report.warnings() == []


# --- 4. demo image-size limit, ENOSPC ---------------------------------------


def test_demo_skips_images_over_the_size_limit(tmp_path, capsys):
    from eca_mmdet.apis.demo import readable_images
    from eca_mmdet.visualization import VisualizationError

    big = _png(tmp_path / 'imgs' / 'big.png', size=(200, 100))
    small = _png(tmp_path / 'imgs' / 'small.png', size=(20, 10))
    images, skipped = readable_images(str(big.parent), max_pixels=10_000)
    assert images == [str(small)]
    assert len(skipped) == 1 and f'image {big} is 200x100 pixels' in skipped[0]
    assert 'warning: ' in capsys.readouterr().err
    with pytest.raises(VisualizationError, match='over the demo'):
        readable_images(str(big), max_pixels=10_000)


def test_enospc_is_one_line(tmp_path):
    """A full disk during any tool used to end in a traceback."""
    code = (
        'import sys\n'
        'from eca_mmdet.apis.common import CliArgumentParser, run_cli\n'
        'def main(args):\n'
        '    try:\n'
        '        raise OSError(28, "No space left on device", "ckpt.pth")\n'
        '    except OSError as e:\n'
        '        raise RuntimeError("PytorchStreamWriter failed") from e\n'
        'sys.exit(run_cli(main, CliArgumentParser(prog="t")))\n'
    )
    proc = subprocess.run(
        [sys.executable, '-c', code],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    _one_error(proc, 'no space left on the device (ckpt.pth)')
    assert errno.ENOSPC == 28


# --- 5. minor ---------------------------------------------------------------


def test_config_path_stays_in_configs():
    from eca_mmdet import config_path

    for name in ('/etc/passwd', '../setup.py'):
        with pytest.raises(FileNotFoundError):
            config_path(name)
    assert config_path('shapes/mask_rcnn_ecaresnet18_shapes.py').endswith(
        'configs/shapes/mask_rcnn_ecaresnet18_shapes.py'
    )


# --- training's work dir (no training run) ----------------------------------


def _ckpt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'ckpt')
    return path


def test_resume_finds_the_newest_checkpoint_without_last_checkpoint(tmp_path):
    from eca_mmdet.apis.train import last_checkpoint

    work = tmp_path / 'work'
    for name in ('epoch_2.pth', 'epoch_10.pth', 'epoch_9.pth', 'best.pth'):
        _ckpt(work / name)
    assert last_checkpoint(str(work)) == str(work / 'epoch_10.pth')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_9.pth'))
    assert last_checkpoint(str(work)) == str(work / 'epoch_9.pth')
    assert last_checkpoint(str(tmp_path / 'empty')) is None


def test_copied_work_dir_resumes_its_own_checkpoint(tmp_path):
    from eca_mmdet.apis.train import last_checkpoint

    original = tmp_path / 'original'
    _ckpt(original / 'epoch_2.pth')
    (original / 'last_checkpoint').write_text(str(original / 'epoch_2.pth'))
    copy_dir = tmp_path / 'copy'
    _ckpt(copy_dir / 'epoch_2.pth')
    (copy_dir / 'last_checkpoint').write_text(str(original / 'epoch_2.pth'))
    assert last_checkpoint(str(copy_dir)) == str(copy_dir / 'epoch_2.pth')


def test_fresh_training_into_a_work_dir_with_checkpoints_stops(tmp_path):
    from mmengine.config import Config

    from eca_mmdet.apis.train import _check_work_dir
    from eca_mmdet.engine import EcaMmdetError

    work = tmp_path / 'work'
    for e in (1, 2, 3):
        _ckpt(work / f'epoch_{e}.pth')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_3.pth'))
    cfg = Config(dict(work_dir=str(work)))
    with pytest.raises(EcaMmdetError) as info:
        _check_work_dir(cfg, start_over=False, move=True)
    message = str(info.value)
    assert 'epoch_1.pth .. epoch_3.pth' in message
    assert '--resume' in message and '--start-over' in message
    _check_work_dir(cfg, start_over=True, move=True)
    assert not list(work.glob('*.pth'))
    (aside,) = work.glob('earlier_*')
    assert sorted(p.name for p in aside.iterdir()) == [
        'epoch_1.pth',
        'epoch_2.pth',
        'epoch_3.pth',
        'last_checkpoint',
    ]


def test_load_from_that_does_not_fit_stops_unless_allowed(tmp_path):
    from mmengine.config import Config

    from eca_mmdet.apis.train import check_load_from_fits
    from eca_mmdet.engine import CheckpointMismatchError

    class Runner:
        model = torch.nn.Linear(4, 3)

    other = tmp_path / 'other.pth'
    torch.save({'state_dict': torch.nn.Linear(4, 5).state_dict()}, other)
    cfg = Config(dict(load_from=str(other), resume=False))
    with pytest.raises(CheckpointMismatchError) as info:
        check_load_from_fits(Runner(), cfg, partial=False)
    assert str(info.value).startswith(f'load_from: checkpoint {other}')
    assert '--partial-load' in str(info.value)
    check_load_from_fits(Runner(), cfg, partial=True)
    fits = tmp_path / 'fits.pth'
    torch.save({'state_dict': Runner.model.state_dict()}, fits)
    check_load_from_fits(Runner(), Config(dict(load_from=str(fits))), False)


# --- tools/test.py outputs (no test run) ------------------------------------


def test_nan_weights_are_named(tmp_path):
    from eca_mmdet.apis.test import nonfinite_weights

    state = copy.deepcopy(torch.nn.Linear(2, 2).state_dict())
    assert nonfinite_weights(state) == []
    state['bias'][0] = float('nan')
    assert nonfinite_weights(state) == ['bias']


def test_test_outputs_are_published_together(tmp_path):
    from eca_mmdet.apis.test import publish_outputs

    work = tmp_path / 'work'
    staging = work / '.test_outputs.partial'
    staging.mkdir(parents=True)
    for name in ('results.bbox.json', 'results.segm.json', 'metrics.json'):
        (work / name).write_text('old')
    (staging / 'results.bbox.json').write_text('new')
    (staging / 'metrics.json').write_text('new')
    stale = publish_outputs(str(staging), str(work))
    assert stale == [str(work / 'results.segm.json')]
    assert (work / 'metrics.json').read_text() == 'new'
    assert not staging.exists()


def test_test_show_dir_over_the_val_images_is_refused(tmp_path, shapes_copy):
    """--show-dir pointed at the val image folder used to replace the
    images with renderings."""
    from mmdet.apis import init_detector
    from tools_testlib import write_config

    config = write_config(tmp_path / 'cfg.py', shapes_copy, max_epochs=1)
    model = init_detector(str(config), device='cpu')  # untrained, fits
    ckpt = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)
    val = shapes_copy / 'val'
    before = {p.name: _digest(p) for p in val.iterdir()}
    proc = run_tool(
        [
            'test.py',
            config,
            ckpt,
            '--work-dir',
            tmp_path / 'work',
            '--show-dir',
            val,
        ],
        cwd=tmp_path,
    )
    _one_error(proc, f'--show-dir {val}', 'image directory')
    assert {p.name: _digest(p) for p in val.iterdir()} == before


def test_safetensors_advice_fits_the_weights(tmp_path):
    """The advice used to be convert_weights.py alone, which fails on a
    detector's weights."""
    from eca_mmdet.engine.checkpoint import checkpoint_file_problem

    header = b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    path = tmp_path / 'model.pth'
    path.write_bytes(len(header).to_bytes(8, 'little') + header + b'\0' * 4)
    problem = checkpoint_file_problem(str(path))
    assert problem.startswith('is a safetensors file'), problem
    assert 'timm' in problem and 'safetensors.torch.load_file' in problem


@pytest.mark.parametrize('how', ['--resume', 'resume=True'])
def test_resume_names_the_newest_checkpoint_explicitly(tmp_path, how):
    """--resume, or resume=True in the config, resumes the newest
    checkpoint of a work dir without last_checkpoint (mmengine alone finds
    none there and starts over)."""
    from eca_mmdet.apis.train import build_parser, build_train_config

    work = tmp_path / 'work'
    for e in (1, 3):
        _ckpt(work / f'epoch_{e}.pth')
    argv = [str(SHAPES_CONFIG), '--work-dir', str(work)]
    argv += ['--resume'] if how == '--resume' else ['--cfg-options', how]
    cfg = build_train_config(build_parser().parse_args(argv))
    assert cfg.resume and cfg.load_from == str(work / 'epoch_3.pth')
