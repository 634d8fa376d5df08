# Fine-tune an ECA-Net50 Mask R-CNN on your own COCO-format data set, with
# your own classes. Edit the four EDIT lines below, then:
#   python tools/train.py configs/finetune/mask_rcnn_ecanet50_custom.py --check
#   python tools/train.py configs/finetune/mask_rcnn_ecanet50_custom.py
# The best epoch by validation box mAP is kept as
# WORK_DIR/best_coco_bbox_mAP_epoch_N.pth. See configs/README.md.
_base_ = '../mask_rcnn_ecanet50_1x.py'

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

train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file=train_ann,
        data_prefix=dict(img=train_img),
    )
)
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file=val_ann,
        data_prefix=dict(img=val_img),
    )
)
test_dataloader = val_dataloader  # EDIT for a separate test set
# the metric reads the same file as the val data set (path from the cwd)
val_evaluator = dict(ann_file=data_root + val_ann)
test_evaluator = val_evaluator

# 12 epochs at half the COCO rate (SGD 0.01 for 16 images per step,
# rescaled to your batch by auto_scale_lr), 100-step warmup, validation and
# a checkpoint every epoch; the best by box mAP is kept apart.
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
