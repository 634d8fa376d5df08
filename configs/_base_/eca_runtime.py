# What every eca-mmdet config adds to mmdet's runtime; inherit it next to the
# mmdet base: _base_ = ['mmdet::...', '../_base_/eca_runtime.py'].

# `eca_mmdet` registers ECAResNet and the hooks below. `eca_mmdet.stack_fixes`
# is the opt-in to the workarounds for mmengine 0.10 on torch 2.x
# (checkpoint loading with an exact allow-list, so --resume and testing work
# on torch >= 2.6 and no checkpoint runs code on older torch; torchvision://
# refused only where torchvision cannot be imported; atomic checkpoint
# writes). Drop it to keep mmengine stock.
custom_imports = dict(
    imports=['eca_mmdet', 'eca_mmdet.stack_fixes'], allow_failed_imports=False
)

custom_hooks = [
    # After each validation, draw the predictions on the first 4 val images
    # into WORK_DIR/progress_frames/ and WORK_DIR/progress.gif.
    # Off: --cfg-options custom_hooks.0.enabled=False
    dict(type='ProgressGifHook'),
    # Stop at the first NaN/inf loss, naming the iteration and the term.
    dict(type='NonFiniteLossHook'),
    # Reseed every epoch: a resumed run repeats an uninterrupted one.
    dict(type='EpochSeedHook'),
    # Skip unreadable training images (listed in WORK_DIR/skipped_images.txt);
    # stop evaluation at one, naming it.
    dict(type='SafeImageLoadingHook'),
]
