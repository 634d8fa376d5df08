# Mask R-CNN + FPN, ECA-Net50 backbone, 1x schedule on COCO 2017.
# Official ECA-Net50 ImageNet weights, converted once with:
#   python tools/convert_weights.py eca_resnet50_k3557.pth.tar \
#       checkpoints/ecanet50_k3557_mmdet.pth
# SGD lr 0.02 is for 16 images per step; auto_scale_lr rescales it to yours.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['eca_mmdet'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='ECAResNet',
        eca_k_size=(3, 5, 5, 7),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/ecanet50_k3557_mmdet.pth')))

auto_scale_lr = dict(enable=True, base_batch_size=16)

# After each validation, draw the predictions on the first 4 val images into
# WORK_DIR/progress_frames/ and WORK_DIR/progress.gif (eca_mmdet/hooks/
# progress_gif.py). Off: --cfg-options custom_hooks.0.enabled=False
custom_hooks = [dict(type='ProgressGifHook')]
