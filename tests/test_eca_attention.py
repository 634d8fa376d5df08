"""The attention explorer: recording ECA gates (fused = paper form = a gate
computed by hand from the conv weights), the analysis, the tool and the
training hook."""

import importlib.util
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tools_testlib import REPO, explain, run_tool

from eca_mmdet.apis.attention import _backbone_input, explore_attention
from eca_mmdet.models import (
    ECALayer,
    ECAResNet,
    NoEcaLayersError,
    record_gates,
)


def _tiny_backbone(depth: int, fused: bool = True, seed: int = 0) -> ECAResNet:
    """A small ECAResNet with random weights and BN statistics, in eval mode
    (a converted ImageNet model's state: frozen BN, the fused paths fold
    norm3 into the gate)."""
    torch.manual_seed(seed)
    model = ECAResNet(
        depth=depth,
        stem_channels=8,
        base_channels=8,
        eca_k_size=None,
        eca_fused=fused,
        init_cfg=None,
    )
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
            assert m.weight.numel() == c
        if isinstance(m, ECALayer):
            m.conv.weight.data.normal_(0, 1.0)
    return model.eval()


def _hand_gates(model: ECAResNet, x: torch.Tensor) -> dict:
    """Each block's gate from its own weights, by the paper's formula
    ``sigmoid(conv1d(mean(branch)))``, the branch run module by module."""
    gates = {}

    def branch(block, inp):
        out = block.relu(block.norm1(block.conv1(inp)))
        if hasattr(block, 'conv3'):
            out = block.relu(block.norm2(block.conv2(out)))
            return block.norm3(block.conv3(out))
        return block.norm2(block.conv2(out))

    def pre_hook(name):
        def hook(block, args):
            w = block.eca.conv.weight
            pooled = branch(block, args[0]).mean((2, 3))  # N, C
            y = F.conv1d(pooled[:, None], w, padding=w.shape[-1] // 2)
            gates[name] = torch.sigmoid(y[:, 0])

        return hook

    handles = [
        m.register_forward_pre_hook(pre_hook(n))
        for n, m in model.named_modules()
        if hasattr(m, 'eca')
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return gates


@pytest.mark.parametrize('depth', [18, 50])
def test_recorded_gates_fused_paper_and_by_hand(depth):
    fused = _tiny_backbone(depth, fused=True)
    paper = _tiny_backbone(depth, fused=False)
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        with record_gates(fused) as rec_fused:
            out_fused = fused(x)
        with record_gates(paper) as rec_paper:
            paper(x)
        plain_out = fused(x)
    g_fused, g_paper = rec_fused.gates(), rec_paper.gates()
    hand = _hand_gates(paper, x)
    assert list(g_fused) == list(hand)
    assert len(hand) == {18: 8, 50: 16}[depth]
    assert list(g_fused)[0] == 'layer1.0'
    for name, ref in hand.items():
        assert g_fused[name].shape == ref.shape == (2, ref.shape[1])
        torch.testing.assert_close(g_paper[name], ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(g_fused[name], ref, rtol=0, atol=1e-6)
    # gates spread out (random conv weights): the comparison is not vacuous
    assert torch.cat([g.flatten() for g in hand.values()]).std() > 0.05
    # recording changed neither the result nor the layers afterwards
    assert len(out_fused) == len(plain_out)
    for a, b in zip(out_fused, plain_out):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert all('gate_sink' not in m.__dict__ for m in fused.modules())


def test_recording_training_mode_and_plugin_forward():
    """Gradient path (custom autograd Function) and ECALayer.forward."""
    model = _tiny_backbone(18).train()
    x = torch.randn(2, 3, 32, 32)
    with record_gates(model) as rec:
        sum(o.sum() for o in model(x)).backward()
    hand = _hand_gates(model.eval(), x)
    for name, ref in hand.items():
        torch.testing.assert_close(rec.gates()[name], ref, rtol=0, atol=1e-6)
    eca = ECALayer(16, 3)
    with record_gates(torch.nn.Sequential(eca)) as rec:
        feats = torch.randn(3, 16, 5, 5)
        eca(feats)
    torch.testing.assert_close(rec.take()['0'], eca.gate(feats).flatten(1))
    assert rec.gates() == {}


def test_record_gates_without_eca_layers():
    with pytest.raises(NoEcaLayersError, match='no ECA layers'):
        with record_gates(torch.nn.Conv2d(3, 3, 1)):
            pass


# --------------------------------------------------------------------------
# The tool on converted weights, on a detector, its errors; the hook
# --------------------------------------------------------------------------
BACKBONE = dict(
    type='ECAResNet',
    depth=50,
    stem_channels=8,
    base_channels=8,
    eca_k_size=None,
)


def _cli(argv, capsys):
    spec = importlib.util.spec_from_file_location(
        'eca_attention_tool', REPO / 'tools' / 'eca_attention.py'
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    from eca_mmdet.apis.common import run_cli

    code = run_cli(tool.main, tool.build_parser(), [str(a) for a in argv])
    return code, capsys.readouterr()


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """A converted-format checkpoint (state_dict + meta.backbone) of a tiny
    random ECA-ResNet-50 with random BN statistics, and three images."""
    import mmcv

    root = tmp_path_factory.mktemp('converted')
    model = _tiny_backbone(50, seed=3)
    ckpt = root / 'eca_r50_converted.pth'
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(backbone=dict(BACKBONE), layout='test'),
        ),
        ckpt,
    )
    rng = np.random.default_rng(0)
    images = []
    for i, (h, w) in enumerate([(40, 56), (64, 48), (50, 50)]):
        path = root / f'img{i}.png'
        mmcv.imwrite(
            rng.integers(0, 255, (h, w, 3), dtype=np.uint8), str(path)
        )
        images.append(str(path))
    paper_cfg = root / 'backbone_paper_form.py'
    paper_cfg.write_text(f'model = {dict(BACKBONE, eca_fused=False)!r}\n')
    return dict(
        root=root, ckpt=ckpt, images=images, model=model, paper_cfg=paper_cfg
    )


def test_tool_on_converted_backbone(converted, capsys):
    out = converted['root'] / 'fused'
    code, cap = _cli(
        [
            converted['ckpt'],
            '--backbone-only',
            '--images',
            *converted['images'],
            '--img-size',
            '32',
            '--out-dir',
            out,
        ],
        capsys,
    )
    assert code == 0, cap.err
    assert 'stage4' in cap.out and 'wrote' in cap.out
    summary = explore_attention(
        str(converted['paper_cfg']),
        str(converted['ckpt']),
        str(converted['root'] / 'paper'),
        images=converted['images'],
        img_size=32,
        progress=False,
    )
    fused = np.load(out / 'gates.npz')
    paper = np.load(summary['paths']['gates'])
    blocks = list(fused['blocks'])
    assert blocks == list(paper['blocks']) and len(blocks) == 16
    assert list(fused['image_files']) == converted['images']
    assert fused['image_classes'].shape == (3, 0)
    model = converted['model']
    for i, path in enumerate(converted['images']):
        hand = _hand_gates(model, _backbone_input(path, 32))
        for name in blocks:
            assert fused[name].shape == (3, hand[name].shape[1])
            np.testing.assert_allclose(
                fused[name][i], hand[name][0], rtol=0, atol=1e-6
            )
            np.testing.assert_allclose(
                paper[name][i], hand[name][0], rtol=0, atol=1e-6
            )
    assert (out / 'class_mean_gates.png').stat().st_size > 1000
    assert (out / 'stage_histograms.png').stat().st_size > 1000
    assert not (out / 'class_offsets.png').exists()  # no classes


@pytest.fixture(scope='module')
def tiny_detector(tmp_path_factory, shapes_data, tiny_config):
    """The session's tiny shapes set and config (conftest.py) and a random
    detector checkpoint of that config in a directory of its own."""
    from eca_mmdet.apis import load_detector

    root = tmp_path_factory.mktemp('detector')
    data, config = shapes_data, tiny_config
    torch.manual_seed(0)
    model = load_detector(str(config))
    for m in model.backbone.modules():
        if isinstance(m, ECALayer):
            m.conv.weight.data.normal_(0, 1.0)
    ckpt = root / 'random.pth'
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=model.dataset_meta),
        ),
        ckpt,
    )
    return dict(root=root, data=data, config=config, ckpt=ckpt)


def test_tool_on_detector_annotations_and_predictions(tiny_detector, capsys):
    from pycocotools.coco import COCO

    d = tiny_detector
    ann = d['data'] / 'annotations' / 'instances_val.json'
    out = d['root'] / 'ann'
    code, cap = _cli(
        [
            d['config'],
            d['ckpt'],
            '--ann',
            ann,
            '--out-dir',
            out,
            '--blocks',
            'layer1.0',
            'layer4.1',
        ],
        capsys,
    )
    assert code == 0, cap.err
    by_ann = np.load(out / 'gates.npz')
    coco = COCO(str(ann))
    ids = sorted(coco.imgs)
    assert list(by_ann['image_ids']) == ids
    names = [coco.cats[c]['name'] for c in sorted(coco.cats)]
    assert list(by_ann['class_names']) == names
    for row, img_id in enumerate(ids):
        expect = {
            coco.cats[a['category_id']]['name']
            for a in coco.imgToAnns[img_id]
            if not a.get('iscrowd')
        }
        assert len(names) == len(by_ann['image_classes'][row])
        got = {n for n, has in zip(names, by_ann['image_classes'][row]) if has}
        assert got == expect
    for png in ('class_mean_gates', 'class_offsets', 'stage_histograms'):
        assert (out / f'{png}.png').stat().st_size > 1000
    stats = json.loads((out / 'stage_stats.json').read_text())
    assert set(stats['stages']) == {'stage1', 'stage2', 'stage3', 'stage4'}
    # the full detector on the same images (classes from predictions)
    # records the gates the backbone-only --ann path does
    files = [str(f) for f in by_ann['image_files']]
    summary = explore_attention(
        str(d['config']),
        str(d['ckpt']),
        str(d['root'] / 'pred'),
        images=files,
        score_thr=0.0,
        progress=False,
    )
    by_pred = np.load(summary['paths']['gates'])
    for name in by_ann['blocks']:
        np.testing.assert_array_equal(by_ann[name], by_pred[name])
    assert by_pred['image_classes'].any()  # score_thr 0: some predictions
    assert list(by_pred['class_names']) == [
        'circle',
        'square',
        'triangle',
        'star',
    ]


def test_tool_errors(tiny_detector, converted, capsys):
    d = tiny_detector
    ann = d['data'] / 'annotations' / 'instances_val.json'
    out = d['root'] / 'err'
    plain_cfg = d['root'] / 'plain_resnet.py'
    plain_cfg.write_text(
        f'_base_ = {str(d["config"])!r}\n'
        "model = dict(backbone=dict(_delete_=True, type='ResNet', depth=18,"
        ' stem_channels=16, base_channels=16, init_cfg=None))\n'
    )
    from eca_mmdet.apis import load_detector

    plain = d['root'] / 'plain.pth'
    torch.save(
        dict(state_dict=load_detector(str(plain_cfg)).state_dict()), plain
    )
    cases = [
        ([plain_cfg, plain, '--ann', ann], 'has no ECA layers'),
        (
            [d['config'], d['root'] / 'nope.pth', '--ann', ann],
            'checkpoint not found',
        ),
        (
            [d['config'], d['ckpt'], '--ann', d['root'] / 'nope.json'],
            'annotation file not found',
        ),
        (
            [d['config'], d['ckpt'], '--ann', ann, '--img-dir', d['root']],
            'not in',
        ),
        (
            [d['config'], d['ckpt'], '--ann', ann, '--blocks', 'layer9.0'],
            'no such ECA block: layer9.0',
        ),
        (
            [d['config'], d['ckpt'], '--images', d['root'] / 'nope.png'],
            'no such image',
        ),
        (
            [converted['ckpt'], '--images', *converted['images']],
            'CHECKPOINT alone with --backbone-only',
        ),
        (
            [d['config'], d['ckpt'], '--ann', ann, '--max-images', '0'],
            '--max-images must be >= 1',
        ),
    ]
    for argv, message in cases:
        code, cap = _cli([*argv, '--out-dir', out], capsys)
        assert code == 1, (argv, cap)
        lines = cap.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('error: '), cap.err
        assert message in lines[0], (message, lines[0])


def test_gate_stats_hook_logs_curves(trained_run, tmp_path):
    """The session's training (conftest.py) runs the hook and validates
    after every epoch: the hook's per-stage statistics land in scalars.json
    and the curves tool draws the between-class distances."""
    from eca_mmdet.visualization.curves import curve_panels, read_run_curves

    work = trained_run['work']
    assert 'EcaGateStatsHook' in trained_run['config'].read_text()
    [scalars] = list(work.glob('*/vis_data/scalars.json'))
    val = [
        json.loads(line)
        for line in scalars.read_text().splitlines()
        if 'coco/bbox_mAP' in line
    ]
    epochs = list(range(1, trained_run['epochs'] + 1))
    assert [v['step'] for v in val] == epochs
    for v in val:
        for stage in ('stage1', 'stage2', 'stage3', 'stage4'):
            mean, std = v[f'eca/{stage}_mean'], v[f'eca/{stage}_std']
            assert 0 < mean < 1 and 0 < std < 0.5
            assert v[f'eca/{stage}_between'] >= 0
    panels = curve_panels([read_run_curves(str(work))])
    assert 'eca/stage1_between' in panels and 'coco/bbox_mAP' in panels
    assert 'eca/stage1_mean' not in panels  # --val-keys 'eca/*' for those
    proc = run_tool(
        [
            'plot_curves.py',
            work,
            '--out',
            tmp_path / 'c.png',
            '--val-keys',
            'eca/*',
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, explain(proc)
    assert 'eca/stage4_std' in proc.stdout


# --------------------------------------------------------------------------
# Gates without information, the colour bar, the images of --ann
# --------------------------------------------------------------------------
def _gate_set(gates, n_classes=3, seed=0):
    from eca_mmdet.visualization.attention import GateSet

    n = next(iter(gates.values())).shape[0]
    rng = np.random.default_rng(seed)
    classes = rng.random((n, n_classes)) < 0.5
    classes[np.arange(n), np.arange(n) % n_classes] = True
    return GateSet(
        list(gates),
        {b: g.astype(np.float32) for b, g in gates.items()},
        np.arange(n),
        [f'{i}.png' for i in range(n)],
        [f'class{k}' for k in range(n_classes)],
        classes,
    )


def test_no_information_criterion():
    from eca_mmdet.visualization.attention import (
        barely_moving,
        no_information,
    )

    rng = np.random.default_rng(0)
    blocks = ('layer1.0', 'layer2.0')
    half = _gate_set({b: np.full((6, 8), 0.5) for b in blocks})
    assert no_information(half) == 'every gate is 0.5 (within 1e-06)'
    # far from 0.5, but the same on every image up to float32 rounding
    base = rng.random(8)
    fixed = _gate_set({b: base + 1e-7 * rng.random((6, 8)) for b in blocks})
    assert no_information(fixed).startswith(
        'no gate changes by 1e-06 across the 6 images'
    )
    assert barely_moving(fixed) is None
    # one channel of one block changing by 1e-4 with the image: information,
    # little of it (all within 0.001 of 0.5)
    moving = {b: np.full((6, 8), 0.5003) for b in blocks}
    moving['layer2.0'][3, 5] += 1e-4
    assert no_information(_gate_set(moving)) is None
    assert barely_moving(_gate_set(moving)) == (
        'every gate is within 0.001 of 0.5 (at most 0.0004 away)'
    )
    one_image = _gate_set({b: np.full((1, 8), 0.7) for b in blocks})
    assert no_information(one_image) is None  # nothing to compare


def test_figures_have_no_offset_or_exponent_text(monkeypatch):
    """Offsets of 1e-7 (gates 1e-6 around 0.5): matplotlib's default
    formatter writes an exponent ("1e-7") over the colour bar's top and an
    offset ("+5e-1") at the axes' ends; the figures carry none, and the
    colour bar's tick labels stay clear of the map."""
    import eca_mmdet.visualization.attention as attention

    rng = np.random.default_rng(0)
    gate_set = _gate_set(
        {
            b: 0.5 + 1e-6 * rng.standard_normal((6, 8))
            for b in ('layer1.0', 'layer1.1', 'layer2.0', 'layer3.0')
        }
    )
    figures = []
    monkeypatch.setattr(
        attention, '_save', lambda fig, out: figures.append(fig) or out
    )
    attention.plot_offset_heatmap(gate_set, 'unused.png')
    attention.plot_class_lines(gate_set, 'unused.png')
    attention.plot_stage_histograms(gate_set, 'unused.png')
    assert len(figures) == 3
    for fig in figures:
        renderer = fig.canvas.get_renderer()
        fig.canvas.draw()
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                assert axis.get_offset_text().get_text() == '', ax
    heatmap = figures[0]
    the_map, cbar = heatmap.axes
    assert '(x 1e-7)' in cbar.get_ylabel()
    low, high = cbar.get_ylim()
    labels = [
        t
        for t in cbar.get_yticklabels()
        if t.get_text() and low <= t.get_position()[1] <= high
    ]
    assert len(labels) >= 2
    map_box = the_map.get_window_extent(renderer)
    for label in labels:
        box = label.get_window_extent(heatmap.canvas.get_renderer())
        assert not box.overlaps(map_box), label.get_text()
    # each label times the unit in the colour bar's label is its value
    for label in labels:
        assert float(label.get_text()) * 1e-7 == pytest.approx(
            label.get_position()[1], rel=1e-6
        )


def _stats(out):
    return json.loads((out / 'stage_stats.json').read_text())


def test_tool_says_when_gates_carry_no_information(tiny_detector, capsys):
    """Zero ECA weights: every gate is sigmoid(0) = 0.5 whatever the image.
    The tool writes the figures and says, in one line, in
    stage_stats.json and in the titles, that they carry nothing."""
    from eca_mmdet.apis import load_detector

    d = tiny_detector
    model = load_detector(str(d['config']), str(d['ckpt']))
    for m in model.backbone.modules():
        if isinstance(m, ECALayer):
            m.conv.weight.data.zero_()
    ckpt = d['root'] / 'zero_eca.pth'
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=model.dataset_meta),
        ),
        ckpt,
    )
    ann = d['data'] / 'annotations' / 'instances_val.json'
    out = d['root'] / 'zero'
    code, cap = _cli(
        [d['config'], ckpt, '--ann', ann, '--out-dir', out], capsys
    )
    assert code == 0, cap.err
    gates = np.load(out / 'gates.npz')
    assert all((gates[b] == 0.5).all() for b in gates['blocks'])
    lines = [
        line
        for line in (cap.out + cap.err).splitlines()
        if 'carry no information' in line
    ]
    assert len(lines) == 1, cap
    assert lines[0].startswith(
        'warning: the gates carry no information: every gate is 0.5'
    )
    assert 'barely move' not in cap.out + cap.err
    stats = _stats(out)
    assert stats['no_information'] == 'every gate is 0.5 (within 1e-06)'
    assert stats['barely_moving'] is None
    for png in ('class_mean_gates', 'class_offsets', 'stage_histograms'):
        assert (out / f'{png}.png').stat().st_size > 1000


def test_tool_on_trained_model_has_no_such_line(trained_run, capsys):
    out = trained_run['root'] / 'attention_trained'
    code, cap = _cli(
        [
            trained_run['config'],
            trained_run['checkpoints'][-1],
            '--ann',
            trained_run['data'] / 'annotations' / 'instances_val.json',
            '--out-dir',
            out,
        ],
        capsys,
    )
    assert code == 0, cap.err
    assert 'no information' not in cap.out + cap.err
    assert _stats(out)['no_information'] is None
    # its gates do change with the image (the criterion is not vacuous)
    gates = np.load(out / 'gates.npz')
    assert max(np.ptp(gates[b], axis=0).max() for b in gates['blocks']) > 1e-5


def test_ann_images_come_from_the_config_dataloader(tiny_detector, capsys):
    """The fine-tune config's layout (annotations/val.json, val/): the
    images of --ann are where the config's val dataloader reads them, not
    next to the annotation file; --img-dir overrides; a missing folder is
    one line naming it."""
    import shutil

    d = tiny_detector
    root = d['root'] / 'my_dataset'
    (root / 'annotations').mkdir(parents=True)
    shutil.copy(
        d['data'] / 'annotations' / 'instances_val.json',
        root / 'annotations' / 'val.json',
    )
    shutil.copytree(d['data'] / 'val', root / 'val')

    def config(name, img):
        path = d['root'] / name
        path.write_text(
            f'_base_ = {str(d["config"])!r}\n'
            'val_dataloader = dict(dataset=dict('
            f'data_root={str(root) + "/"!r}, '
            "ann_file='annotations/val.json', "
            f'data_prefix=dict(img={img!r})))\n'
        )
        return path

    ann = root / 'annotations' / 'val.json'
    out = d['root'] / 'finetune_layout'
    code, cap = _cli(
        [config('ft.py', 'val/'), d['ckpt'], '--ann', ann, '--out-dir', out],
        capsys,
    )
    assert code == 0, cap.err
    files = list(np.load(out / 'gates.npz')['image_files'])
    assert len(files) == 4
    assert all(f.startswith(str(root / 'val') + '/') for f in files), files
    # the folder the config names does not exist
    code, cap = _cli(
        [
            config('ft_bad.py', 'images/'),
            d['ckpt'],
            '--ann',
            ann,
            '--out-dir',
            out,
        ],
        capsys,
    )
    assert code == 1
    [line] = cap.err.strip().splitlines()
    assert line.startswith(f'error: image folder of {ann} not found: ')
    assert str(root / 'images') in line
    assert "the config's val_dataloader" in line and '--img-dir' in line
    # --img-dir wins over the config
    code, cap = _cli(
        [
            config('ft_bad.py', 'images/'),
            d['ckpt'],
            '--ann',
            ann,
            '--img-dir',
            d['data'] / 'val',
            '--out-dir',
            out,
        ],
        capsys,
    )
    assert code == 0, cap.err
    files = list(np.load(out / 'gates.npz')['image_files'])
    assert all(f.startswith(str(d['data'] / 'val')) for f in files), files
