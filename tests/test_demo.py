"""demo/image_demo.py: renderings + JSON whose RLE masks decode to the
model's masks and whose label names are the model's classes, and one-line
errors for bad inputs."""

import json

import numpy as np
import pytest
import tools_testlib as lib
import torch
from pycocotools import mask as mask_utils

import eca_mmdet  # noqa: F401
from eca_mmdet.apis import load_detector, predict
from eca_mmdet.apis.demo import prediction_dict, run_demo
from eca_mmdet.engine import safe_torch_load


def test_demo_outputs_round_trip(trained_run, tmp_path):
    out_dir = tmp_path / 'out'
    val_dir = trained_run['data'] / 'val'
    ckpt = trained_run['checkpoints'][-1]
    proc = lib.run_script(
        'demo/image_demo.py',
        f'{val_dir}/*.png',
        trained_run['config'],
        '--weights',
        ckpt,
        '--out-dir',
        out_dir,
        '--pred-score-thr',
        '0.05',
        '--no-progress',
    )
    assert proc.returncode == 0, lib.explain(proc)

    model = load_detector(str(trained_run['config']), str(ckpt))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like the demo's OMP_NUM_THREADS=1
    names_seen = set()
    try:
        n_masks = 0
        for img in sorted(val_dir.glob('*.png')):
            assert (out_dir / 'vis' / img.name).is_file()
            pred = json.loads(
                (out_dir / 'preds' / f'{img.stem}.json').read_text()
            )
            want = predict(model, [str(img)])[0].pred_instances
            assert set(pred) == {
                'labels',
                'label_names',
                'scores',
                'bboxes',
                'masks',
            }
            assert list(pred)[:2] == ['labels', 'label_names']
            assert pred['labels'] == want.labels.tolist()
            assert pred['label_names'] == [
                lib.CLASSES[i] for i in pred['labels']
            ]
            names_seen.update(pred['label_names'])
            np.testing.assert_allclose(
                pred['scores'], want.scores.numpy(), atol=1e-4
            )
            np.testing.assert_allclose(
                np.array(pred['bboxes']).reshape(-1, 4),
                want.bboxes.numpy(),
                atol=1e-2,
            )
            assert len(pred['masks']) == len(want)
            for rle, mask in zip(pred['masks'], want.masks.numpy()):
                assert isinstance(rle['counts'], str)
                decoded = mask_utils.decode(
                    dict(size=rle['size'], counts=rle['counts'].encode())
                )
                assert decoded.shape == mask.shape
                assert (decoded.astype(bool) == mask).mean() > 0.999
                n_masks += 1
    finally:
        torch.set_num_threads(threads)
    assert n_masks > 0, 'no masks predicted: the round trip tested nothing'
    # more than one class, so a constant name would not pass
    assert len(names_seen) > 1, names_seen


def test_run_demo_returns_and_writes_label_names(trained_run, tmp_path):
    """The prediction dicts run_demo returns carry label_names too and are
    what it writes to preds/<stem>.json; prediction_dict of a sample
    without an image path works alike."""
    from mmdet.structures import DetDataSample

    image = sorted((trained_run['data'] / 'val').glob('*.png'))[0]
    model = load_detector(
        str(trained_run['config']), str(trained_run['checkpoints'][-1])
    )
    classes = lib.CLASSES
    assert tuple(model.dataset_meta['classes']) == classes

    out_dir = tmp_path / 'out'
    (pred,) = run_demo(model, [str(image)], str(out_dir), show_progress=False)
    assert pred['labels'], 'no detections: nothing to name'
    assert pred['label_names'] == [classes[i] for i in pred['labels']]
    saved = json.loads((out_dir / 'preds' / f'{image.stem}.json').read_text())
    assert saved == pred
    assert (out_dir / 'vis' / image.name).is_file()

    sample = DetDataSample()
    sample.pred_instances = predict(model, [str(image)])[0].pred_instances
    direct = prediction_dict(sample, classes)
    assert direct['label_names'] == pred['label_names']
    assert json.loads(json.dumps(direct)) == pred


@pytest.fixture
def mismatched_checkpoint(trained_run, tmp_path):
    ckpt = safe_torch_load(str(trained_run['checkpoints'][-1]))
    state = dict(ckpt['state_dict'])
    key = 'roi_head.bbox_head.fc_cls.weight'
    state[key] = state[key][:3]  # as if trained for 2 classes
    path = tmp_path / 'other.pth'
    torch.save(dict(state_dict=state, meta=ckpt['meta']), path)
    return path


@pytest.mark.parametrize('case', ['bad_image', 'missing_ckpt', 'mismatch'])
def test_demo_errors_are_one_line(
    case, trained_run, tmp_path, mismatched_checkpoint
):
    image = sorted((trained_run['data'] / 'val').glob('*.png'))[0]
    ckpt = trained_run['checkpoints'][-1]
    if case == 'bad_image':
        image = tmp_path / 'broken.png'
        image.write_bytes(b'\x89PNG\r\n\x1a\n not really')
        expect = f'error: cannot read image {image}'
    elif case == 'missing_ckpt':
        ckpt = tmp_path / 'nope.pth'
        expect = f'error: checkpoint not found: {ckpt}'
    else:
        ckpt = mismatched_checkpoint
        expect = (
            f"error: checkpoint {ckpt} does not fit the config's "
            'model: shape mismatch 1: roi_head.bbox_head.fc_cls.weight:'
            ' checkpoint (3, 64) vs model (5, 64)'  # fc_out_channels=64
        )
    proc = lib.run_script(
        'demo/image_demo.py',
        image,
        trained_run['config'],
        '--weights',
        ckpt,
        '--out-dir',
        tmp_path / 'out',
        '--no-progress',
    )
    assert proc.returncode == 1, lib.explain(proc)
    assert 'Traceback' not in proc.stderr, lib.explain(proc)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith('error:')]
    assert len(errors) == 1, lib.explain(proc)
    assert errors[0].startswith(expect), lib.explain(proc)
    assert not (tmp_path / 'out' / 'preds').exists()


# ----------------------------------------------------------------------------
# Bad numbers, bad weights files and unreadable images in a folder; these use
# an untrained checkpoint of the shapes config (no training needed)
# ----------------------------------------------------------------------------
def _png(path, seed=0):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
        path
    )
    return path


@pytest.fixture(scope='module')
def untrained(tmp_path_factory):
    """The shapes config and a checkpoint of its randomly initialised model
    (with the classes in its meta, as tools/train.py writes them)."""
    from eca_mmdet.apis import load_detector

    config = lib.SHAPES_CONFIG
    model = load_detector(str(config))
    ckpt = tmp_path_factory.mktemp('untrained') / 'random.pth'
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=dict(model.dataset_meta)),
        ),
        ckpt,
    )
    return dict(config=config, checkpoint=ckpt)


def _error_line(proc) -> str:
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, (
        lib.explain(proc)
    )
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith('error')]
    assert len(errors) == 1, lib.explain(proc)
    return errors[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    'option,value,expected',
    [
        ('--batch-size', '0', 'error: --batch-size must be at least 1, got 0'),
        (
            '--pred-score-thr',
            '1.5',
            'error: --pred-score-thr must be a score in [0, 1], got 1.5',
        ),
        (
            '--pred-score-thr',
            '-0.3',
            'error: --pred-score-thr must be a score in [0, 1], got -0.3',
        ),
    ],
)
def test_demo_bad_numbers_are_one_line(tmp_path, option, value, expected):
    image = _png(tmp_path / 'img.png')
    proc = lib.run_script(
        'demo/image_demo.py',
        image,
        tmp_path / 'cfg.py',
        '--weights',
        tmp_path / 'w.pth',
        '--out-dir',
        tmp_path / 'out',
        '--no-progress',
        option,
        value,
    )
    assert _error_line(proc) == expected, lib.explain(proc)
    assert not (tmp_path / 'out').exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    'content,expected',
    [
        (b'', 'is empty (0 bytes)'),
        (
            b'placeholder: download the weights here\n',
            'is not a PyTorch checkpoint (a text file',
        ),
    ],
)
def test_demo_empty_or_text_weights(untrained, tmp_path, content, expected):
    weights = tmp_path / 'weights.pth'
    weights.write_bytes(content)
    proc = lib.run_script(
        'demo/image_demo.py',
        _png(tmp_path / 'img.png'),
        untrained['config'],
        '--weights',
        weights,
        '--out-dir',
        tmp_path / 'out',
        '--no-progress',
    )
    line = _error_line(proc)
    assert line.startswith(f'error: checkpoint {weights} {expected}'), line


@pytest.mark.slow
def test_demo_folder_skips_an_unreadable_image(untrained, tmp_path):
    """The good images get their outputs; the bad one is named in a warning
    and the run exits 0 (documented in demo/image_demo.py)."""
    folder = tmp_path / 'images'
    good = [_png(folder / 'a.png', 1), _png(folder / 'c.png', 2)]
    bad = folder / 'b.png'
    bad.write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    out = tmp_path / 'out'
    proc = lib.run_script(
        'demo/image_demo.py',
        folder,
        untrained['config'],
        '--weights',
        untrained['checkpoint'],
        '--out-dir',
        out,
        '--no-progress',
        '--batch-size',
        '2',
    )
    assert proc.returncode == 0, lib.explain(proc)
    warnings = [
        ln for ln in proc.stderr.splitlines() if ln.startswith('warning:')
    ]
    assert warnings and all(str(bad) in ln for ln in warnings), lib.explain(
        proc
    )
    assert not any(ln.startswith('error') for ln in proc.stderr.splitlines())
    assert sorted(p.name for p in (out / 'vis').iterdir()) == [
        'a.png',
        'c.png',
    ]
    for img in good:
        pred = json.loads((out / 'preds' / f'{img.stem}.json').read_text())
        assert set(pred) >= {'labels', 'label_names', 'scores', 'bboxes'}
    assert not (out / 'preds' / 'b.json').exists()


@pytest.mark.slow
def test_demo_refuses_images_sharing_a_name(tmp_path):
    """mmdet names the outputs after the file name: two x.png from different
    folders would overwrite each other."""
    for sub in ('a', 'b'):
        _png(tmp_path / 'imgs' / sub / 'x.png')
    proc = lib.run_script(
        'demo/image_demo.py',
        f'{tmp_path}/imgs/*/x.png',
        tmp_path / 'cfg.py',
        '--weights',
        tmp_path / 'w.pth',
        '--out-dir',
        tmp_path / 'out',
        '--no-progress',
    )
    line = _error_line(proc)
    assert (
        'would write the same outputs (preds/x.json)' in line
        and str(tmp_path / 'imgs' / 'a' / 'x.png') in line
    ), line
