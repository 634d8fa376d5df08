# A Mask R-CNN small enough to train on 2 CPU cores: a half-width ECA-ResNet-18
# (32-64-128-256 channels) from scratch (GroupNorm in backbone and FPN: batch
# statistics of 2 small images are too noisy to train BN from scratch),
# 64-channel FPN, slim heads, GIoU box loss, AdamW, on the bundled synthetic
# shapes set:
#   python tools/make_shapes_dataset.py data/shapes
#   tools/dist_train.sh configs/shapes/mask_rcnn_ecaresnet18_shapes.py 2
# (two processes use 2 CPU cores better than one process's two threads; or
# python tools/train.py CONFIG, 1 process)
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    '../_base_/eca_runtime.py',
]

data_root = 'data/shapes/'
metainfo = dict(classes=('circle', 'square', 'triangle', 'star'))
num_classes = 4
img_scale = (128, 128)
norm_cfg = dict(type='GN', num_groups=16, requires_grad=True)

model = dict(
    backbone=dict(
        type='ECAResNet',
        depth=18,
        # half width: on the shapes set as accurate as the full 64-512
        # widths and 40% faster (docs/quickstart.md)
        stem_channels=32,
        base_channels=32,
        eca_k_size=None,
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=None,
    ),
    neck=dict(
        in_channels=[32, 64, 128, 256], out_channels=64, norm_cfg=norm_cfg
    ),
    # objects are 10-64 px: anchors from 16 px at stride 4
    rpn_head=dict(
        in_channels=64, feat_channels=64, anchor_generator=dict(scales=[4])
    ),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(
            in_channels=64,
            fc_out_channels=256,
            num_classes=num_classes,
            reg_decoded_bbox=True,
            loss_bbox=dict(_delete_=True, type='GIoULoss', loss_weight=10.0),
        ),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(
            num_convs=2,
            in_channels=64,
            conv_out_channels=64,
            num_classes=num_classes,
        ),
    ),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(sampler=dict(num=128)),
    ),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=300), rcnn=dict(max_per_img=50)
    ),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=(
            'img_id',
            'img_path',
            'ori_shape',
            'img_shape',
            'scale_factor',
        ),
    ),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs, val_interval=2)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1,
    ),
]
# AdamW trains this from-scratch model far faster than SGD; lr 2e-3 is for
# 4 images per step (the quickstart: tools/dist_train.sh CONFIG 2, two CPU
# processes of 2 images), rescaled by auto_scale_lr for other batch sizes
# (1e-3 for one process). Fused AdamW where the running torch has it for the
# parameters (CPU since torch 2.4); elsewhere the constructor drops `fused`
# with one log line (eca_mmdet.engine.optim).
optim_wrapper = dict(
    constructor='FusedFallbackOptimWrapperConstructor',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=2e-3, weight_decay=0.05, fused=True
    ),
    clip_grad=dict(max_norm=10),
)
auto_scale_lr = dict(enable=True, base_batch_size=4)
default_hooks = dict(
    logger=dict(interval=10), checkpoint=dict(interval=1, max_keep_ckpts=12)
)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
