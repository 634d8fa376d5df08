# Faster R-CNN + FPN, ECA-Net50 backbone, 1x schedule on COCO 2017.
#   python tools/convert_weights.py eca_resnet50_k3557.pth.tar \
#       checkpoints/ecanet50_k3557_mmdet.pth
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    './_base_/eca_runtime.py',
]

model = dict(
    backbone=dict(
        type='ECAResNet',
        eca_k_size=(3, 5, 5, 7),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/ecanet50_k3557_mmdet.pth',
        ),
    )
)

auto_scale_lr = dict(enable=True, base_batch_size=16)
