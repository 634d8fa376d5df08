"""Renderings: what changes (masks, boxes, labels) and what does not, stable
class colours, box-only detectors, tools/visualize.py and the
``RenderPredictionsHook`` behind ``tools/test.py --show-dir``."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tools_testlib as lib
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from PIL import Image

import eca_mmdet  # noqa: F401
import eca_mmdet.hooks  # noqa: F401
from eca_mmdet.apis import load_detector, predict
from eca_mmdet.visualization import (
    StableColorDetVisualizer,
    check_score_thr,
    class_palette,
    fixed_palette,
    read_image,
)

CLASSES = ('circle', 'square', 'triangle', 'star')
META = dict(classes=CLASSES)
BAND = 2  # px around a box edge that its outline may touch


def _sample(boxes, labels, scores=None, masks=None) -> DetDataSample:
    inst = InstanceData()
    inst.bboxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    inst.labels = torch.tensor(labels, dtype=torch.int64)
    inst.scores = torch.tensor(
        scores if scores is not None else [0.9] * len(labels)
    )
    if masks is not None:
        inst.masks = torch.as_tensor(np.asarray(masks, dtype=bool))
    sample = DetDataSample()
    sample.pred_instances = inst
    return sample


class DetRenderer:
    """The visualizer's ``add_datasample`` with the drawing returned."""

    def __init__(self, meta, score_thr=0.3):
        self.score_thr = check_score_thr(score_thr)
        self.visualizer = StableColorDetVisualizer(
            name=f'test_{id(self)}'
        ).set_meta(meta)

    @property
    def label_regions(self):
        return self.visualizer.label_regions

    def render(self, image, sample, draw_gt=False):
        self.visualizer.add_datasample(
            'test',
            image,
            sample,
            draw_gt=draw_gt,
            pred_score_thr=self.score_thr,
        )
        return self.visualizer.get_image()


def _rect_mask(shape, x0, y0, x1, y1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def allowed_pixels(shape, instances, label_regions):
    """Where a rendering may differ from its input: the masks, a band
    around each box outline, and the label patches."""
    h, w = shape
    allowed = np.zeros((h, w), bool)
    if 'masks' in instances:
        allowed |= (
            np.asarray(instances.masks, dtype=bool).any(0)
            if len(instances.masks)
            else False
        )
    if 'bboxes' in instances:
        for x0, y0, x1, y1 in np.asarray(instances.bboxes):
            xs0, ys0 = int(np.floor(x0)) - BAND, int(np.floor(y0)) - BAND
            xs1, ys1 = int(np.ceil(x1)) + BAND, int(np.ceil(y1)) + BAND
            ring = np.zeros((h, w), bool)
            ring[
                max(ys0, 0) : max(ys1 + 1, 0), max(xs0, 0) : max(xs1 + 1, 0)
            ] = True
            inner = np.zeros((h, w), bool)
            yi0, yi1 = ys0 + 2 * BAND + 1, ys1 - 2 * BAND - 1
            xi0, xi1 = xs0 + 2 * BAND + 1, xs1 - 2 * BAND - 1
            if yi1 >= yi0 and xi1 >= xi0:
                inner[
                    max(yi0, 0) : max(yi1 + 1, 0),
                    max(xi0, 0) : max(xi1 + 1, 0),
                ] = True
            allowed |= ring & ~inner
    for x0, y0, x1, y1 in label_regions:
        allowed[max(y0, 0) : max(y1 + 1, 0), max(x0, 0) : max(x1 + 1, 0)] = (
            True
        )
    return allowed


def noise_image(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(100, 160, size=(h, w, 3)).astype(np.uint8)


# ----------------------------------------------------------------------------
# Colours
# ----------------------------------------------------------------------------
def test_palette_fixed_distinct_and_prefix_stable():
    colors = class_palette(META)
    assert colors == fixed_palette(4) == fixed_palette(10)[:4]
    arr = np.array(colors, dtype=float)
    dist = np.linalg.norm(arr[:, None] - arr[None], axis=-1)
    assert dist[~np.eye(4, dtype=bool)].min() > 80, colors
    # mmdet datasets inherit COCO's palette for a custom class set: ignored
    from mmdet.datasets import CocoDataset

    coco = dict(classes=CLASSES, palette=CocoDataset.METAINFO['palette'])
    assert class_palette(coco) == colors
    # an explicit palette is used as given
    mine = [(1, 2, 3), (4, 5, 6), (7, 8, 9), (10, 11, 12)]
    assert class_palette(dict(classes=CLASSES, palette=mine)) == mine


def _mask_color(rendering, mask):
    pix = rendering[mask].reshape(-1, 3)
    assert (pix == pix[0]).all(), 'mask fill is not uniform'
    return tuple(int(v) for v in pix[0])


RENDER_SNIPPET = r"""
import sys
import numpy as np, torch
from mmengine.structures import InstanceData
from mmdet.structures import DetDataSample
from eca_mmdet.visualization import StableColorDetVisualizer
masks = np.zeros((1, 64, 80), bool); masks[0, 10:30, 40:60] = True
inst = InstanceData(bboxes=torch.tensor([[38., 8., 62., 32.]]),
                    labels=torch.tensor([2]), scores=torch.tensor([0.8]),
                    masks=torch.from_numpy(masks))
s = DetDataSample(); s.pred_instances = inst
img = np.full((64, 80, 3), 90, np.uint8)
vis = StableColorDetVisualizer(name='snippet').set_meta(
    dict(classes=('circle', 'square', 'triangle', 'star')))
vis.add_datasample('x', img, s)
out = vis.get_image()
np.save(sys.argv[1], out)
"""


@pytest.mark.slow
def test_colours_stable_across_images_and_runs(tmp_path):
    """Class 2 gets one colour whether alone or among other classes, in any
    order, and in a separate process."""
    renderer = DetRenderer(META, score_thr=0.0)
    gray = np.full((64, 80, 3), 90, np.uint8)
    m_a = _rect_mask((64, 80), 40, 10, 60, 30)
    alone = renderer.render(
        gray, _sample([[38, 8, 62, 32]], [2], [0.8], [m_a])
    )
    masks_b = [
        _rect_mask((64, 80), 2, 2, 15, 15),
        _rect_mask((64, 80), 20, 40, 35, 60),
        _rect_mask((64, 80), 50, 40, 75, 60),
    ]
    crowd = renderer.render(
        gray,
        _sample(
            [[0, 0, 17, 17], [18, 38, 37, 62], [48, 38, 77, 62]],
            [3, 2, 0],
            [0.7, 0.8, 0.9],
            masks_b,
        ),
    )
    inner_a = _rect_mask((64, 80), 44, 22, 58, 29)  # below the label patch
    inner_b = _rect_mask((64, 80), 24, 52, 34, 59)
    color_a = _mask_color(alone, inner_a)
    assert color_a == _mask_color(crowd, inner_b)
    # the three classes in the crowd have three different colours
    inner_c = _rect_mask((64, 80), 54, 52, 73, 59)
    inner_d = _rect_mask((64, 80), 4, 12, 14, 14)
    assert (
        len(
            {color_a, _mask_color(crowd, inner_c), _mask_color(crowd, inner_d)}
        )
        == 3
    )
    # a second renderer and a second process give the same pixels
    again = DetRenderer(META).render(
        gray, _sample([[38, 8, 62, 32]], [2], [0.8], [m_a])
    )
    np.testing.assert_array_equal(alone, again)
    out = tmp_path / 'other_run.npy'
    proc = subprocess.run(
        [sys.executable, '-c', RENDER_SNIPPET, str(out)],
        env=lib.tool_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, lib.explain(proc)
    np.testing.assert_array_equal(np.load(out), alone)


# ----------------------------------------------------------------------------
# Pixels
# ----------------------------------------------------------------------------
def test_synthetic_rendering_changes_only_masks_boxes_labels():
    img = noise_image()
    masks = [
        _rect_mask((96, 128), 20, 30, 50, 70),
        _rect_mask((96, 128), 80, 10, 120, 40),
    ]
    sample = _sample(
        [[15, 25, 55, 75], [75, 5, 125, 45]], [1, 3], [0.9, 0.6], masks
    )
    renderer = DetRenderer(META, score_thr=0.3)
    out = renderer.render(img, sample)
    assert out.shape == img.shape
    changed = (out != img).any(-1)
    union = np.any(masks, axis=0)
    assert changed[union].all(), 'some mask pixels were not painted'
    assert len(renderer.label_regions) == 2
    allowed = allowed_pixels(
        img.shape[:2], sample.pred_instances, renderer.label_regions
    )
    assert not (changed & ~allowed).any(), (
        f'{int((changed & ~allowed).sum())} pixels changed outside'
    )
    # a prediction under the threshold is not drawn at all
    low = _sample([[15, 25, 55, 75]], [1], [0.2], masks[:1])
    np.testing.assert_array_equal(renderer.render(img, low), img)


def test_box_only_predictions_draw_boxes_and_labels():
    img = noise_image(seed=1)
    sample = _sample([[10, 10, 60, 70], [70, 20, 120, 80]], [0, 2], [0.9, 0.8])
    renderer = DetRenderer(META)
    out = renderer.render(img, sample)
    changed = (out != img).any(-1)
    assert changed[10, 30] and changed[45, 70], 'box edges not drawn'
    assert changed.sum() > 0 and len(renderer.label_regions) == 2
    allowed = allowed_pixels(
        img.shape[:2], sample.pred_instances, renderer.label_regions
    )
    assert not (changed & ~allowed).any()
    # box interiors (away from the label) stay as they were
    np.testing.assert_array_equal(out[40:60, 20:50], img[40:60, 20:50])


def test_retinanet_config_box_only_model(tmp_path):
    """A box-only detector of the repo's configs renders (random weights;
    ECA-ResNet-18 instead of 50 to build fast)."""
    model = load_detector(
        str(lib.REPO / 'configs' / 'retinanet_ecanet50_1x.py'),
        None,
        cfg_options={
            'model.backbone.depth': 18,
            'model.neck.in_channels': [64, 128, 256, 512],
            'model.test_cfg.score_thr': 0.0,
            'model.test_cfg.max_per_img': 3,
        },
    )
    img = noise_image(64, 64)
    sample = predict(model, [img])[0]
    assert 'masks' not in sample.pred_instances
    renderer = DetRenderer(model.dataset_meta, score_thr=0.0)
    out = renderer.render(img, sample)
    assert out.shape == img.shape
    assert len(sample.pred_instances) > 0 and (out != img).any()
    allowed = allowed_pixels(
        img.shape[:2], sample.pred_instances, renderer.label_regions
    )
    assert not ((out != img).any(-1) & ~allowed).any()


def test_trained_model_rendering_pixels(trained_run):
    model = load_detector(
        str(trained_run['config']), str(trained_run['checkpoints'][-1])
    )
    assert tuple(model.dataset_meta['classes']) == CLASSES
    renderer = DetRenderer(model.dataset_meta, score_thr=0.0)
    val_images = sorted((trained_run['data'] / 'val').glob('*.png'))
    painted = 0
    for path in val_images:
        img = read_image(str(path))
        sample = predict(model, [str(path)])[0]
        pred = sample.pred_instances
        out = renderer.render(img, sample)
        changed = (out != img).any(-1)
        if 'masks' in pred and len(pred):
            union = pred.masks.numpy().any(0)
            # pixels painted by a translucent class colour must change
            # unless the colour equals the pixel; allow for that rarity
            assert changed[union].mean() > 0.98
            painted += int(union.sum())
        allowed = allowed_pixels(img.shape[:2], pred, renderer.label_regions)
        assert not (changed & ~allowed).any(), path.name
    assert painted > 0, 'the tiny model predicted no mask at all'


# ----------------------------------------------------------------------------
# tools/visualize.py and the --show-dir hook
# ----------------------------------------------------------------------------
def test_visualize_tool_with_gt_and_contact_sheet(trained_run, tmp_path):
    out_dir = tmp_path / 'vis'
    ann = trained_run['data'] / 'annotations' / 'instances_val.json'
    proc = lib.run_script(
        'tools/visualize.py',
        trained_run['config'],
        trained_run['checkpoints'][-1],
        'val',
        '--out-dir',
        out_dir,
        '--pred-score-thr',
        '0.05',
        '--gt',
        ann,
    )
    assert proc.returncode == 0, lib.explain(proc)
    coco = json.loads(ann.read_text())
    names = sorted(im['file_name'].rsplit('.', 1)[0] for im in coco['images'])
    written = sorted(
        p.stem for p in out_dir.glob('*.png') if p.name != 'contact_sheet.png'
    )
    assert written == names
    sheet = Image.open(out_dir / 'contact_sheet.png')
    assert sheet.width > 0 and sheet.height > 0
    # GT | prediction side by side; GT masks painted on the left panel
    from pycocotools import mask as mask_utils

    for im in coco['images']:
        drawn = np.asarray(
            Image.open(
                out_dir / (im['file_name'].rsplit('.', 1)[0] + '.png')
            ).convert('RGB')
        )
        h, w = im['height'], im['width']
        assert drawn.shape == (h, 2 * w + 4, 3)
        src = read_image(str(trained_run['data'] / 'val' / im['file_name']))
        left = drawn[:, :w]
        for ann_ in coco['annotations']:
            if ann_['image_id'] != im['id'] or ann_.get('iscrowd'):
                continue
            seg = ann_['segmentation']
            rle = (
                mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
                if isinstance(seg, list)
                else (
                    mask_utils.frPyObjects(seg, h, w)
                    if isinstance(seg['counts'], list)
                    else seg
                )
            )
            m = mask_utils.decode(rle).astype(bool)
            assert (left[m] != src[m]).any(-1).mean() > 0.9


def test_render_predictions_hook_in_runner_test(trained_run, tmp_path):
    """What tools/test.py --show-dir wires: the hook in runner.test()."""
    from mmengine.runner import Runner

    cfg = lib.run_config(
        trained_run['config'], tmp_path / 'work', custom_hooks=[]
    )
    cfg.default_hooks.visualization = dict(
        type='RenderPredictionsHook',
        draw=True,
        test_out_dir=str(tmp_path / 'show'),
        score_thr=0.05,
    )
    cfg.visualizer = dict(
        type='StableColorDetVisualizer',
        vis_backends=[dict(type='LocalVisBackend')],
    )
    cfg.load_from = str(trained_run['checkpoints'][-1])
    runner = Runner.from_cfg(cfg)
    runner.test()
    pngs = sorted(p.name for p in (tmp_path / 'show').glob('*.png'))
    assert 'contact_sheet.png' in pngs
    assert len(pngs) == lib.NUM_VAL + 1
    one = np.asarray(Image.open(tmp_path / 'show' / '000000.png'))
    assert one.shape[1] == 2 * lib.IMG_SIZE + 4  # GT | prediction


def test_add_datasample_out_file(tmp_path):
    """GT | prediction panels (4 px apart) when the sample has GT, the
    prediction alone with draw_gt=False; out_file is written."""
    img = noise_image(48, 64)
    sample = _sample(
        [[5, 5, 30, 30]], [1], [0.9], [_rect_mask((48, 64), 8, 8, 28, 28)]
    )
    sample.set_metainfo(dict(ori_shape=(48, 64)))
    gt = InstanceData(
        bboxes=torch.tensor([[6.0, 6.0, 29.0, 29.0]]), labels=torch.tensor([1])
    )
    sample.gt_instances = gt
    vis = StableColorDetVisualizer(name='out_file').set_meta(META)
    vis.add_datasample('x', img, sample, out_file=str(tmp_path / 'a.png'))
    drawn = np.asarray(Image.open(tmp_path / 'a.png'))
    assert drawn.shape == (48, 2 * 64 + 4, 3)
    assert (drawn[:, 64:68] == 255).all()
    vis.add_datasample(
        'x', img, sample, draw_gt=False, out_file=str(tmp_path / 'b.png')
    )
    assert np.asarray(Image.open(tmp_path / 'b.png')).shape == (48, 64, 3)


def test_show_dir_names_never_collide(tmp_path):
    """Images sharing a file name (different folders), one named like the
    contact sheet, one differing only in case: every rendering gets its own
    file and the logged count is the number of files."""
    import logging
    from types import SimpleNamespace

    from eca_mmdet.hooks.render import RenderPredictionsHook

    paths = [
        tmp_path / 'a' / 'x.png',
        tmp_path / 'b' / 'x.png',
        tmp_path / 'c' / 'contact_sheet.png',
        tmp_path / 'X.png',
    ]
    samples = []
    for i, path in enumerate(paths):
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(noise_image(24, 32, seed=i)).save(path)
        sample = _sample([[2, 2, 20, 20]], [i % 4], [0.9])
        sample.set_metainfo(
            dict(img_path=str(path), img_id=10 + i, ori_shape=(24, 32))
        )
        samples.append(sample)
    out = tmp_path / 'show'
    hook = RenderPredictionsHook(out_dir=str(out), score_thr=0.5)
    messages = []
    logger = logging.getLogger('test_show_dir_names')
    logger.info = messages.append
    runner = SimpleNamespace(
        test_dataloader=SimpleNamespace(
            dataset=SimpleNamespace(metainfo=META)
        ),
        logger=logger,
        work_dir=str(tmp_path),
        timestamp='t',
    )
    hook.before_test(runner)
    hook.after_test_iter(runner, 0, outputs=samples[:2])
    hook.after_test_iter(runner, 1, outputs=samples[2:])
    hook.after_test_epoch(runner)
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(
        [
            'x.png',
            'x_id11.png',
            'contact_sheet_id12.png',
            'X_id13.png',
            'contact_sheet.png',
        ]
    ), files
    assert len(set(hook.written)) == len(hook.written) == 4
    assert messages and messages[-1].startswith(
        f'RenderPredictionsHook: 4 renderings in {out}'
    )
    # each file is its own image's rendering (GT-less: same size as input)
    for path, sample in zip(hook.written, samples):
        drawn = np.asarray(Image.open(path))
        src = np.asarray(Image.open(sample.img_path))
        assert drawn.shape == src.shape
        assert (drawn[22:, :] == src[22:, :]).all()  # below the box: as is


@pytest.mark.slow
@pytest.mark.parametrize('thr', [-0.1, 1.5, float('nan')])
def test_score_thresholds_outside_0_1_are_refused(tmp_path, thr):
    from eca_mmdet.engine.errors import EcaMmdetError
    from eca_mmdet.hooks.render import RenderPredictionsHook

    with pytest.raises(
        EcaMmdetError,
        match=r'score_thr must be a score in '
        r'\[0, 1\]',
    ):
        RenderPredictionsHook(out_dir=str(tmp_path), score_thr=thr)
    with pytest.raises(EcaMmdetError, match=r'\[0, 1\]'):
        StableColorDetVisualizer(name=f'thr_{thr}').set_meta(
            META
        ).add_datasample(
            'x', noise_image(), _sample([], []), pred_score_thr=thr
        )
    for tool, args in (
        (
            'tools/visualize.py',
            ['cfg.py', 'ckpt.pth', 'img.png', '--out-dir', tmp_path / 'out'],
        ),
        (
            'tools/progress_gif.py',
            [
                'cfg.py',
                tmp_path / 'work',
                'img.png',
                '--out',
                tmp_path / 'x.gif',
            ],
        ),
    ):
        proc = lib.run_script(tool, *args, '--pred-score-thr', str(thr))
        assert proc.returncode == 1 and 'Traceback' not in proc.stderr, (
            lib.explain(proc)
        )
        assert proc.stderr.strip().splitlines() == [
            f'error: --pred-score-thr must be a score in [0, 1], got {thr!r}'
        ], lib.explain(proc)
