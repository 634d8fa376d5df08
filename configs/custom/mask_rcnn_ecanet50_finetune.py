# Fine-tune an ECA-Net50 Mask R-CNN on your own COCO-format data set, with
# your own classes, starting from trained weights (a COCO-trained detector or
# the ImageNet backbone). Without any weights take
# configs/custom/mask_rcnn_ecaresnet18_scratch.py instead: frozen stage 1 and
# frozen BatchNorm cannot learn from random weights. Which recipe to take:
# configs/README.md ("Train on your own data"). A GPU job: on CPU a step of
# this model at 1333x800 takes tens of seconds.
# Copy this file (it works from any folder), edit the EDIT lines, then:
#   python tools/train.py my_finetune.py --check
#   python tools/train.py my_finetune.py
# The best epoch by validation box mAP is kept as
# WORK_DIR/best_coco_bbox_mAP_epoch_N.pth. Edit the copy rather than
# inheriting it: mmengine reads this file before yours, so a child config's
# data_root, classes or img_scale would not reach the dataloaders, heads and
# pipelines built from them below (tools/train.py --check warns when they
# differ).
_base_ = __import__('eca_mmdet').config_path('mask_rcnn_ecanet50_1x.py')

# EDIT: the data set, relative to where you run the tools. Expected layout:
# annotations/train.json, annotations/val.json, train/, val/ (images).
data_root = 'data/my_dataset/'
train_ann, train_img = 'annotations/train.json', 'train/'
val_ann, val_img = 'annotations/val.json', 'val/'
# EDIT: your class names, exactly as the "name"s of the files' categories
# and in their order (category ids need not be contiguous; another order is
# refused, as mmdet numbers labels in the files' order). Label i is
# classes[i].
classes = ('scratch', 'dent', 'rust')
# EDIT: the input size: images are resized to fit in (width, height),
# keeping their aspect ratio (mmdet's COCO size; smaller is faster).
img_scale = (1333, 800)
# EDIT: a COCO-trained ECA-Net50 Mask R-CNN (e.g. from tools/train.py
# configs/mask_rcnn_ecanet50_1x.py). Its class layers do not fit and start
# new (mmengine logs their size mismatch). Set None (here, in the file) to
# start from the ImageNet backbone of the base config instead.
load_from = 'checkpoints/mask_rcnn_ecanet50_1x_coco.pth'
# tools/train.py stops on a load_from that does not fit the model unless
# partial loading is allowed: here the class layers are meant not to fit.
partial_load = True

metainfo = dict(classes=classes)
model = dict(
    # with load_from the backbone comes from that checkpoint
    backbone=dict(
        init_cfg=None
        if load_from
        else dict(
            type='Pretrained',
            checkpoint='checkpoints/ecanet50_k3557_mmdet.pth',
        )
    ),
    roi_head=dict(
        bbox_head=dict(num_classes=len(classes)),
        mask_head=dict(num_classes=len(classes)),
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
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file=train_ann,
        data_prefix=dict(img=train_img),
        pipeline=train_pipeline,
    )
)
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file=val_ann,
        data_prefix=dict(img=val_img),
        pipeline=test_pipeline,
    )
)
test_dataloader = val_dataloader  # EDIT for a separate test set
# the metric reads the same file as the val data set (path from the cwd)
val_evaluator = dict(ann_file=data_root + val_ann)
test_evaluator = val_evaluator

# 12 epochs at half the COCO rate (SGD 0.01 for 16 images per step,
# rescaled to your batch by auto_scale_lr), 100-step warmup (--check warns
# when the run is shorter), validation and a checkpoint every epoch; the
# best by box mAP is kept apart.
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1,
    ),
]
default_hooks = dict(
    checkpoint=dict(
        interval=1, max_keep_ckpts=2, save_best='coco/bbox_mAP', rule='greater'
    )
)
