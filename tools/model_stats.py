"""Parameters and FLOPs of ECA backbones and detector configs, next to the
ECA-Net paper's cost table.

    python tools/model_stats.py                     # backbones + paper table
    python tools/model_stats.py configs/mask_rcnn_ecanet50_1x.py \
        mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py --shape 800 1280
"""

import argparse
import os.path as osp
import sys
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from eca_mmdet.apis import load_detector  # noqa: E402
from eca_mmdet.model_stats import (
    PAPER_STATS,
    backbone_flops,  # noqa: E402
    count_parameters,
    detector_flops,
    format_stats,
)

NOTE = """\
Counting conventions: FLOPs are mmengine FlopAnalyzer multiply-adds of
convolutions and linear layers (mmdet's get_flops.py); the ECA pooling,
sigmoid and scaling are not counted, its 1-D conv is (a few hundred FLOPs).
Backbone rows exclude the ImageNet classifier (fc, 2.05M parameters, which
the paper's classification counts include); detector FLOPs depend on the
input size and on the number of RPN proposals reaching the RoI heads."""


def build_detector(config: str):
    """The detector of ``config`` (a file or ``mmdet::...``), random
    weights."""
    from mmengine.config import Config
    from mmengine.hub import get_config
    from mmengine.logging import MMLogger

    MMLogger.get_instance('mmengine', log_level='WARNING')
    cfg = get_config(config) if '::' in config else Config.fromfile(config)
    return load_detector(cfg)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'configs',
        nargs='*',
        help='detector configs (files or mmdet::...) to count',
    )
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        default=(800, 1280),
        metavar=('H', 'W'),
        help='detector input size',
    )
    parser.add_argument(
        '--backbone-shape',
        type=int,
        nargs=2,
        default=(224, 224),
        metavar=('H', 'W'),
    )
    args = parser.parse_args()

    from mmdet.models.backbones import ResNet

    import eca_mmdet  # noqa: F401
    from eca_mmdet.models import ECAResNet

    backbones = {
        'ResNet-50 (mmdet)': ResNet(depth=50),
        'ECA-Net50 k3557': ECAResNet(depth=50, eca_k_size=(3, 5, 5, 7)),
        'ResNet-101 (mmdet)': ResNet(depth=101),
        'ECA-Net101 k3357': ECAResNet(depth=101, eca_k_size=(3, 3, 5, 7)),
    }
    h, w = args.backbone_shape
    rows = {
        f'{name}, {h}x{w}': (count_parameters(m), backbone_flops(m, (h, w)))
        for name, m in backbones.items()
    }
    for config in args.configs:
        try:
            model = build_detector(config)
        except (FileNotFoundError, KeyError, ValueError) as e:
            sys.exit(f'error: cannot build {config}: {e}')
        rows[f'{config}, {args.shape[0]}x{args.shape[1]}'] = (
            count_parameters(model),
            detector_flops(model, args.shape),
        )
    print('ours')
    print(format_stats(rows))
    print('\nECA-Net paper')
    print(
        format_stats(
            {k: (int(p), int(f)) for k, (p, f) in PAPER_STATS.items()}
        )
    )
    print('\n' + NOTE)


if __name__ == '__main__':
    main()
