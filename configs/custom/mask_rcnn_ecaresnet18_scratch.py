# Train a Mask R-CNN with an ECA-ResNet backbone from scratch (no pretrained
# weights) on your own COCO-format data: the quickstart's model (half-width
# ECA-ResNet-18, GroupNorm, AdamW) with your data, classes and input size.
# Which recipe to take: configs/README.md ("Train on your own data").
# Copy this file (it works from any folder), edit the EDIT lines, then:
#   python tools/train.py my_scratch.py --check
#   python tools/train.py my_scratch.py
# Edit the copy rather than inheriting it: mmengine reads this file before
# yours, so a child config's data_root, classes or img_scale would not reach
# the dataloaders, heads and pipelines built from them below (tools/train.py
# --check warns when they differ).
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    __import__('eca_mmdet').config_path('_base_/eca_runtime.py'),
]

# EDIT: the data set, relative to where you run the tools.
data_root = 'data/my_dataset/'
train_ann, train_img = 'annotations/train.json', 'train/'
val_ann, val_img = 'annotations/val.json', 'val/'
# EDIT: your class names, exactly as the "name"s of the files' categories
# and in their order (any category ids; label i is classes[i]).
classes = ('scratch', 'dent', 'rust')
# EDIT: the input size: images are resized to fit in (width, height),
# keeping their aspect ratio, for training, validation and testing.
img_scale = (640, 640)
# EDIT: the backbone: depth 18 or 34 (basic blocks) or 50 or 101
# (bottlenecks); width 32 is the quickstart's half-width network, 64 the
# standard ResNet widths (a multiple of 16: GroupNorm of 16 groups). The
# FPN and the heads widen with it.
depth = 18
width = 32
# EDIT: the schedule (a from-scratch model needs more epochs than a
# fine-tuned one; with a few hundred images, 24-50 epochs).
max_epochs = 24

# ---------------------------------------------------------------------------
expansion = 1 if depth < 50 else 4
fpn_channels = 2 * width
norm_cfg = dict(type='GN', num_groups=16, requires_grad=True)
metainfo = dict(classes=classes)

model = dict(
    backbone=dict(
        type='ECAResNet',
        depth=depth,
        stem_channels=width,
        base_channels=width,
        eca_k_size=None,  # adaptive k per stage
        # from scratch every stage and every norm layer must learn
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=None,
    ),
    neck=dict(
        in_channels=[width * expansion * 2**i for i in range(4)],
        out_channels=fpn_channels,
        norm_cfg=norm_cfg,
    ),
    rpn_head=dict(in_channels=fpn_channels, feat_channels=fpn_channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=fpn_channels),
        bbox_head=dict(
            in_channels=fpn_channels,
            fc_out_channels=8 * width,
            num_classes=len(classes),
            reg_decoded_bbox=True,
            loss_bbox=dict(_delete_=True, type='GIoULoss', loss_weight=10.0),
        ),
        mask_roi_extractor=dict(out_channels=fpn_channels),
        mask_head=dict(
            num_convs=2,
            in_channels=fpn_channels,
            conv_out_channels=fpn_channels,
            num_classes=len(classes),
        ),
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
    num_workers=2,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file=train_ann,
        data_prefix=dict(img=train_img),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=2,
    num_workers=2,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file=val_ann,
        data_prefix=dict(img=val_img),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader  # EDIT for a separate test set
# the metric reads the same file as the val data set (path from the cwd)
val_evaluator = dict(ann_file=data_root + val_ann)
test_evaluator = val_evaluator

# AdamW at 2e-3 for 4 images per step (rescaled to yours by auto_scale_lr),
# a one-epoch linear warm-up whatever the data set's size, steps at 2/3 and
# 11/12 of the run; validation and a checkpoint every epoch, the best by box
# mAP kept as WORK_DIR/best_coco_bbox_mAP_epoch_N.pth.
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True,
    ),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[max_epochs * 2 // 3, max_epochs * 11 // 12],
        gamma=0.1,
    ),
]
optim_wrapper = dict(
    constructor='FusedFallbackOptimWrapperConstructor',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=2e-3, weight_decay=0.05, fused=True
    ),
    clip_grad=dict(max_norm=10),
)
auto_scale_lr = dict(enable=True, base_batch_size=4)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(
        interval=1, max_keep_ckpts=2, save_best='coco/bbox_mAP', rule='greater'
    ),
)
