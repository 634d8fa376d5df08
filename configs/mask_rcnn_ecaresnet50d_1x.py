# Mask R-CNN + FPN on timm's ECA-ResNet-50-D (deep stem, avg-down shortcuts,
# adaptive k = (5, 5, 5, 7)), 1x schedule on COCO 2017.
#   python tools/convert_weights.py ecaresnet50d.pth \
#       checkpoints/ecaresnet50d_mmdet.pth
_base_ = './mask_rcnn_ecanet50_1x.py'

model = dict(
    backbone=dict(
        arch='ecaresnet50d',
        eca_k_size=None,
        init_cfg=dict(
            type='Pretrained', checkpoint='checkpoints/ecaresnet50d_mmdet.pth'
        ),
    )
)
