# Mask R-CNN + FPN, ECA-Net101 backbone, 1x schedule on COCO 2017.
#   python tools/convert_weights.py eca_resnet101_k3357.pth.tar \
#       checkpoints/ecanet101_k3357_mmdet.pth
_base_ = './mask_rcnn_ecanet50_1x.py'

model = dict(
    backbone=dict(
        depth=101,
        eca_k_size=(3, 3, 5, 7),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/ecanet101_k3357_mmdet.pth',
        ),
    )
)
