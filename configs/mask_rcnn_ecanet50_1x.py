# Mask R-CNN + FPN, ECA-Net50 backbone, 1x schedule on COCO 2017.
# Official ECA-Net50 ImageNet weights, converted once with:
#   python tools/convert_weights.py eca_resnet50_k3557.pth.tar \
#       checkpoints/ecanet50_k3557_mmdet.pth
# SGD lr 0.02 is for 16 images per step; auto_scale_lr rescales it to yours.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
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
