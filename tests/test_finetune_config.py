"""configs/custom/mask_rcnn_ecanet50_finetune.py trains on a COCO-format set
of other classes, as written.

A tiny set unlike the shapes set is generated where the config expects it
(its ``data_root``, relative to the tool's working directory): odd image
sizes, the config's class names under non-contiguous, unsorted category ids
(in the classes' order: mmdet numbers labels in the file's order), an extra
category that is not one of the classes listed first, polygon,
compressed-RLE and crowd (uncompressed RLE) masks, empty images. A child
config only shrinks the model and the images; data paths, classes, head
sizes, evaluator, schedule and best-checkpoint saving stay the fine-tune
config's. ``load_from`` is a stand-in 80-class (COCO-like) detector of the
shrunk size, so that loading a detector of other classes is exercised too.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from own_dataset import box_of, uncompressed_rle
from tools_testlib import REPO, explain, run_tool

pytest.importorskip('mmdet')
mask_utils = pytest.importorskip('pycocotools.mask')

from mmengine.config import Config  # noqa: E402

FINETUNE = REPO / 'configs' / 'custom' / 'mask_rcnn_ecanet50_finetune.py'
# (width, height); every side >= 32, the inherited filter_cfg.min_size
TRAIN_SIZES = [(71, 53), (97, 64), (53, 88), (120, 45), (64, 64), (83, 77)]
VAL_SIZES = [(77, 59), (45, 101), (66, 66)]
CATEGORY_IDS = (42, 7, 13)  # for classes[0], [1], [2]: not 1..n, not sorted
EXTRA_CATEGORY = dict(id=99, name='not_a_class')
IMG = 64

SHRINK = f"""
model = dict(
    backbone=dict(depth=18, stem_channels=16, base_channels=16),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(num_convs=1, in_channels=32, conv_out_channels=32)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100),
                   rcnn=dict(sampler=dict(num=64))),
    # score_thr=0: even a barely trained model writes detections (an empty
    # result has no coco/bbox_mAP for save_best)
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100),
                  rcnn=dict(score_thr=0.0, max_per_img=20)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=({IMG}, {IMG}), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({IMG}, {IMG}), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1)
randomness = dict(seed=0)
"""


def _make_split(
    root,
    img_dir,
    ann_file,
    sizes,
    classes,
    first_image_id,
    rng,
    empty=(),
    crowd=None,
    extra_class=None,
):
    """Images and a COCO file. Instance ``k`` of an image alternates between
    an ellipse with a compressed-RLE mask and a polygon triangle."""
    from PIL import Image, ImageDraw

    (root / img_dir).mkdir(parents=True, exist_ok=True)
    (root / ann_file).parent.mkdir(parents=True, exist_ok=True)
    colours = [(220, 40, 40), (40, 200, 60), (40, 60, 230), (200, 200, 40)]
    cat_ids = list(CATEGORY_IDS) + [EXTRA_CATEGORY['id']]
    images, annotations = [], []
    for index, (w, h) in enumerate(sizes):
        image_id = first_image_id + 3 * index  # non-contiguous too
        pixels = rng.integers(60, 140, size=(h, w, 3), dtype=np.uint8)
        canvas = Image.fromarray(pixels)
        objects = [] if index in empty else [0, 1, 2][: 1 + index % 3]
        if index == extra_class:
            objects.append(3)
        for k, label in enumerate(objects):
            layer = Image.new('L', (w, h), 0)
            draw = ImageDraw.Draw(layer)
            bw, bh = int(w * 0.35), int(h * 0.35)
            x0 = int(rng.integers(0, w - bw))
            y0 = int(rng.integers(0, h - bh))
            ann = dict(
                id=1000 + len(annotations) * 5,
                image_id=image_id,
                category_id=cat_ids[label],
                iscrowd=0,
            )
            if k % 2 == 0:
                draw.ellipse([x0, y0, x0 + bw, y0 + bh], fill=1)
                mask = np.array(layer, dtype=np.uint8)
                rle = mask_utils.encode(np.asfortranarray(mask))
                ann['segmentation'] = dict(
                    size=rle['size'], counts=rle['counts'].decode()
                )
            else:
                points = [x0, y0 + bh, x0 + bw / 2, y0, x0 + bw, y0 + bh]
                draw.polygon(points, fill=1)
                mask = np.array(layer, dtype=np.uint8)
                ann['segmentation'] = [[float(p) for p in points]]
            ann['bbox'] = box_of(mask)
            ann['area'] = float(mask.sum())
            annotations.append(ann)
            canvas.paste(
                Image.new('RGB', (w, h), colours[label]),
                mask=Image.fromarray(mask * 255),
            )
        if index == crowd:
            mask = np.zeros((h, w), np.uint8)
            mask[h // 2 :, : w // 3] = 1
            annotations.append(
                dict(
                    id=1000 + len(annotations) * 5,
                    image_id=image_id,
                    category_id=CATEGORY_IDS[0],
                    iscrowd=1,
                    segmentation=uncompressed_rle(mask),
                    bbox=box_of(mask),
                    area=float(mask.sum()),
                )
            )
        file_name = f'img_{image_id}.jpg'
        canvas.save(root / img_dir / file_name, quality=95)
        images.append(
            dict(id=image_id, file_name=file_name, width=w, height=h)
        )
    # an extra category first, then the classes in their order
    categories = [EXTRA_CATEGORY] + [
        dict(id=cid, name=name) for cid, name in zip(CATEGORY_IDS, classes)
    ]
    (root / ann_file).write_text(
        json.dumps(
            dict(images=images, annotations=annotations, categories=categories)
        )
    )


def _dataset_paths(ds):
    root = ds.data_root
    return Path(root) / ds.ann_file, Path(root) / ds.data_prefix.img


def _stand_in_detector(child_config, path):
    """A COCO-like (80-class) detector of the shrunk size, its frozen stem
    marked, saved as mmengine does."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import eca_mmdet  # noqa: F401 (registers ECAResNet)

    register_all_modules()
    cfg = Config.fromfile(str(child_config))
    cfg.model.roi_head.bbox_head.num_classes = 80
    cfg.model.roi_head.mask_head.num_classes = 80
    model = MODELS.build(cfg.model)
    state = model.state_dict()
    stem = state['backbone.conv1.weight']
    state['backbone.conv1.weight'] = torch.linspace(
        -1, 1, stem.numel()
    ).reshape(stem.shape)
    torch.save(dict(meta=dict(), state_dict=state), path)
    return state


@pytest.fixture(scope='module')
def finetuned(tmp_path_factory):
    root = tmp_path_factory.mktemp('finetune')
    cfg = Config.fromfile(str(FINETUNE))
    classes = tuple(cfg.train_dataloader.dataset.metainfo.classes)
    rng = np.random.default_rng(0)
    train_ann, train_img = _dataset_paths(cfg.train_dataloader.dataset)
    val_ann, val_img = _dataset_paths(cfg.val_dataloader.dataset)
    _make_split(
        root,
        train_img,
        train_ann,
        TRAIN_SIZES,
        classes,
        11,
        rng,
        empty=(4,),
        crowd=1,
        extra_class=2,
    )
    _make_split(
        root,
        val_img,
        val_ann,
        VAL_SIZES,
        classes,
        501,
        rng,
        empty=(1,),
        crowd=2,
    )

    child = root / 'finetune_tiny.py'
    ckpt = root / 'coco_like_detector.pth'
    child.write_text(
        f'_base_ = {str(FINETUNE)!r}\nload_from = {str(ckpt)!r}\n' + SHRINK
    )
    loaded = _stand_in_detector(child, ckpt)
    work = root / 'work'
    # cwd=root: the config's data_root (and evaluator file) resolve there
    proc = run_tool(['train.py', child, '--work-dir', work], cwd=root)
    assert proc.returncode == 0, explain(proc)
    return dict(
        root=root,
        cfg=cfg,
        classes=classes,
        work=work,
        proc=proc,
        loaded=loaded,
        val_ann=val_ann,
    )


def test_config_wiring():
    """One place sets data, classes and heads; everything follows it."""
    cfg = Config.fromfile(str(FINETUNE))
    classes = tuple(cfg.train_dataloader.dataset.metainfo.classes)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg[loader].dataset
        assert tuple(ds.metainfo.classes) == classes, loader
        assert ds.data_root == cfg.data_root, loader
    assert cfg.model.roi_head.bbox_head.num_classes == len(classes)
    assert cfg.model.roi_head.mask_head.num_classes == len(classes)
    val = cfg.val_dataloader.dataset
    for key in ('val_evaluator', 'test_evaluator'):
        assert cfg[key].ann_file == val.data_root + val.ann_file, key
    assert cfg.test_dataloader.dataset.ann_file == val.ann_file
    # a detector checkpoint brings the backbone: no ImageNet init on top
    assert cfg.load_from and cfg.model.backbone.init_cfg is None
    hook = cfg.default_hooks.checkpoint
    assert (hook.save_best, hook.rule) == ('coco/bbox_mAP', 'greater')
    assert cfg.train_cfg.val_interval == 1


def test_load_from_none_starts_from_the_imagenet_backbone(tmp_path):
    """Set load_from = None in the file: the backbone is initialised from
    the base config's converted ImageNet weights again."""
    text = FINETUNE.read_text()
    text, n = re.subn(
        r'^load_from = .*$', 'load_from = None', text, flags=re.M
    )
    assert n == 1
    # a copy in another folder reads as the original does
    edited = tmp_path / 'edited.py'
    edited.write_text(text)
    cfg = Config.fromfile(str(edited))
    assert cfg.load_from is None
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    assert (
        cfg.model.backbone.init_cfg.checkpoint
        == Config.fromfile(
            str(REPO / 'configs' / 'mask_rcnn_ecanet50_1x.py')
        ).model.backbone.init_cfg.checkpoint
    )


@pytest.mark.slow
def test_trained_heads_have_the_configs_classes(finetuned):
    classes = finetuned['classes']
    n = len(classes)
    best = finetuned['work'] / 'best_coco_bbox_mAP_epoch_1.pth'
    assert best.is_file(), sorted(p.name for p in finetuned['work'].iterdir())
    ckpt = torch.load(best, map_location='cpu', weights_only=False)
    state = ckpt['state_dict']
    assert state['roi_head.bbox_head.fc_cls.weight'].shape[0] == n + 1
    assert state['roi_head.bbox_head.fc_reg.weight'].shape[0] == 4 * n
    assert state['roi_head.mask_head.conv_logits.weight'].shape[0] == n
    assert tuple(ckpt['meta']['dataset_meta']['classes']) == classes
    # load_from was loaded: the frozen stem still holds the stand-in's
    # weights; the 80-class layers did not fit and were left new
    assert torch.equal(
        state['backbone.conv1.weight'],
        finetuned['loaded']['backbone.conv1.weight'],
    )
    log = finetuned['proc'].stdout + finetuned['proc'].stderr
    assert re.search(
        r'size mismatch for roi_head\.bbox_head\.fc_cls\.weight'
        r'.*torch\.Size\(\[81, 64\]\).*torch\.Size\(\['
        rf'{n + 1}, 64\]\)',
        log,
    ), explain(finetuned['proc'])


@pytest.mark.slow
def test_validation_metrics_and_best_checkpoint(finetuned):
    work = finetuned['work']
    scalars = list(work.glob('*/vis_data/scalars.json'))
    assert len(scalars) == 1, scalars
    records = [
        json.loads(line)
        for line in scalars[0].read_text().splitlines()
        if line.strip()
    ]
    val = [r for r in records if 'coco/bbox_mAP' in r]
    assert len(val) == 1, records  # one epoch, validated once
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'):
        assert 0.0 <= val[0][key] <= 1.0, (key, val[0])
    assert val[0]['step'] == 1
    best = sorted(p.name for p in work.glob('best_*.pth'))
    assert best == ['best_coco_bbox_mAP_epoch_1.pth']
    assert (work / 'epoch_1.pth').is_file()
    log = finetuned['proc'].stdout + finetuned['proc'].stderr
    assert 'best checkpoint' in log.lower(), explain(finetuned['proc'])


@pytest.mark.slow
def test_test_tool_on_the_best_checkpoint(finetuned, tmp_path):
    """tools/test.py with the same config: the test dataloader and evaluator
    (the val set) score the best checkpoint into metrics.json."""
    out = tmp_path / 'test'
    proc = run_tool(
        [
            'test.py',
            finetuned['root'] / 'finetune_tiny.py',
            finetuned['work'] / 'best_coco_bbox_mAP_epoch_1.pth',
            '--work-dir',
            out,
        ],
        cwd=finetuned['root'],
    )
    assert proc.returncode == 0, explain(proc)
    metrics = json.loads((out / 'metrics.json').read_text())
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics)
    val = json.loads((finetuned['root'] / finetuned['val_ann']).read_text())
    dets = json.loads((out / 'results.bbox.json').read_text())
    assert dets
    # predictions carry the file's category ids, mapped by class name
    assert {d['category_id'] for d in dets} <= set(CATEGORY_IDS)
    assert {d['image_id'] for d in dets} <= {i['id'] for i in val['images']}


@pytest.mark.slow
def test_check_then_a_wrong_evaluator_file(finetuned):
    """--check passes on the config as written; pointed at the train file,
    the evaluator is refused in one line before any training."""
    child = finetuned['root'] / 'finetune_tiny.py'
    proc = run_tool(['train.py', child, '--check'], cwd=finetuned['root'])
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.startswith('ok: '), explain(proc)
    train_ann = (
        finetuned['cfg'].data_root
        + finetuned['cfg'].train_dataloader.dataset.ann_file
    )
    proc = run_tool(
        [
            'train.py',
            child,
            '--check',
            '--cfg-options',
            f'val_evaluator.ann_file={train_ann}',
        ],
        cwd=finetuned['root'],
    )
    assert proc.returncode == 1, explain(proc)
    errors = [
        ln for ln in proc.stderr.splitlines() if ln.startswith('error: ')
    ]
    assert len(errors) == 1 and 'Traceback' not in proc.stderr, explain(proc)
    assert f'val_evaluator.ann_file={train_ann!r}' in errors[0]
    assert f'3 of the {len(VAL_SIZES)} image ids' in errors[0]
