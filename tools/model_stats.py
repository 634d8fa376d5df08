"""Parameters and FLOPs of ECA backbones and detector configs, next to the
ECA-Net paper's cost table. Bad input is one ``error: ...`` line, exit 1.

    python tools/model_stats.py                     # backbones + paper table
    python tools/model_stats.py configs/mask_rcnn_ecanet50_1x.py \
        mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py --shape 800 1280
"""

import argparse
import os.path as osp
import sys
import warnings
from typing import Optional, Sequence

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmdet.models.backbones import ResNet  # noqa: E402
from mmengine.hub import get_config  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402

from eca_mmdet.apis import load_detector  # noqa: E402
from eca_mmdet.apis.common import (  # noqa: E402
    CliArgumentParser,
    ConfigError,
    load_config,
    run_cli,
)
from eca_mmdet.engine.errors import CONFIG_BUILD_ERRORS, first_line  # noqa: E402
from eca_mmdet.model_stats import (  # noqa: E402
    PAPER_STATS,
    backbone_flops,
    count_parameters,
    detector_flops,
    format_stats,
)
from eca_mmdet.models import ECAResNet  # noqa: E402

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
    MMLogger.get_instance('mmengine', log_level='WARNING')
    if '::' in config:
        try:
            cfg = get_config(config)
        except Exception as e:  # noqa: BLE001 - unknown package or file
            raise ConfigError(
                f'cannot load config {config}: {type(e).__name__}: '
                f'{first_line(e)}'
            ) from None
    else:
        cfg = load_config(config)
    try:
        return load_detector(cfg)
    except CONFIG_BUILD_ERRORS as e:
        raise ConfigError(
            f'cannot build the model of {config}: {type(e).__name__}: '
            f'{first_line(e)}'
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = CliArgumentParser(
        prog='tools/model_stats.py',
        description='Parameters and FLOPs of ECA backbones and detector '
        "configs, next to the ECA-Net paper's cost table.",
    )
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
        help='backbone input size',
    )
    return parser


def report(args: argparse.Namespace) -> int:
    """Count the backbones and ``args.configs`` and print the tables."""
    if min(args.shape + args.backbone_shape) < 32:
        raise ConfigError('--shape and --backbone-shape must be at least 32')
    models = [(config, build_detector(config)) for config in args.configs]
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
    for config, model in models:
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
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (1 after one ``error:`` line
    for bad input)."""
    return run_cli(report, build_parser(), argv)


if __name__ == '__main__':
    sys.exit(main())
