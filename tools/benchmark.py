"""Wall-clock cost of ECA: ECA models against their plain mmdet twins.

    python tools/benchmark.py [--pairs 15] [--cases NAME ...] [--json OUT]

Each case alternates A (ECA) and B (plain) in one process after a warm-up
and reports the ratio of the fastest runs (the fastest fifth of each side:
on a shared machine interference only adds time) next to the median of the
per-pair ratios A/B with min and max. With several cases, each runs in a
fresh process of its own, so that what one case leaves behind (heap,
caches) cannot favour either side of the next. The JSON's ``env`` records
what produced the figures: CPU model, logical cores, device, torch and
Python versions, git commit, UTC date and the command line.
"""

import argparse
import json
import os.path as osp
import subprocess
import sys
import tempfile

import torch
from mmdet.models.backbones import ResNet

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from eca_mmdet.apis import load_detector  # noqa: E402
from eca_mmdet.apis.common import CliArgumentParser, run_cli  # noqa: E402
from eca_mmdet.benchmark import (
    PairTiming,
    format_table,  # noqa: E402
    inference_step,
    make_eca_twin,
    run_environment,
    time_pairs,
    train_step,
)
from eca_mmdet.engine import (  # noqa: E402
    atomic_write,
    check_output_location,
)
from eca_mmdet.engine.errors import EcaMmdetError  # noqa: E402
from eca_mmdet.models import ECAResNet  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# What the detector configs use for the backbone.
DET_BACKBONE = dict(frozen_stages=1, norm_eval=True, style='pytorch')


def backbone_pair(depth, k, fused=True, **overrides):
    """(ECAResNet, mmdet ResNet) of one depth, randomly initialised, with
    :data:`DET_BACKBONE` updated by ``overrides``."""
    cfg = dict(DET_BACKBONE, **overrides)
    torch.manual_seed(0)
    plain = ResNet(depth=depth, **cfg)
    plain.init_weights()
    eca = ECAResNet(depth=depth, eca_k_size=k, eca_fused=fused, **cfg)
    eca.init_weights()
    return eca, plain


def fast_paper_pair(depth, k, **overrides):
    """(ECAResNet with the fast ECA paths, the same weights in the paper's
    form): what eca_mmdet.models.eca_fast buys."""
    fast, _ = backbone_pair(depth, k, **overrides)
    paper, _ = backbone_pair(depth, k, fused=False, **overrides)
    paper.load_state_dict(fast.state_dict())
    return fast, paper


def detector(config):
    """A detector from a config, randomly initialised, that always keeps 100
    detections per image so both sides do the same head work."""
    from mmengine.config import Config
    from mmengine.hub import get_config

    cfg = get_config(config) if '::' in config else Config.fromfile(config)
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    torch.manual_seed(0)
    model = load_detector(cfg)
    model.init_weights()
    return model.eval()


def detector_inference(model, h, w, device):
    """One image through the detector's predict path (no data pipeline)."""
    from mmdet.structures import DetDataSample

    x = torch.randn(1, 3, h, w, device=device)
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(h, w),
            ori_shape=(h, w),
            scale_factor=(1.0, 1.0),
            batch_input_shape=(h, w),
            pad_shape=(h, w),
        )
    )

    def run():
        with torch.no_grad():
            return model.predict(x, [sample], rescale=False)

    return run


def cases(args, device):
    """name -> function returning (run_a, run_b, a_label, b_label)."""
    fmt = (
        torch.channels_last if args.channels_last else torch.contiguous_format
    )

    def prep(*models):
        return [m.to(device, memory_format=fmt) for m in models]

    def image(n, h, w):
        return torch.randn(n, 3, h, w, device=device).contiguous(
            memory_format=fmt
        )

    def bb(depth, k, shape, step, fused=True, label='eca'):
        def make():
            eca, plain = prep(*backbone_pair(depth, k, fused))
            x = image(shape[0], *shape[2:])
            return step(eca, x), step(plain, x), label, 'resnet'

        return make

    def fast_vs_paper(step, **overrides):
        def make():
            fast, paper = prep(*fast_paper_pair(50, k50, **overrides))
            x = image(1, h, w)
            return step(fast, x), step(paper, x), 'eca-fast', 'eca-paper'

        return make

    def det():
        eca = detector(osp.join(REPO, 'configs/mask_rcnn_ecanet50_1x.py'))
        plain = detector('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py')
        # same features on both sides, hence the same head work
        make_eca_twin(eca, plain)
        eca, plain = prep(eca, plain)
        h, w = args.det_shape
        return (
            detector_inference(eca, h, w, device),
            detector_inference(plain, h, w, device),
            'eca',
            'resnet',
        )

    h, w = args.shape
    half = args.batch_side
    k50, k101 = (3, 5, 5, 7), (3, 3, 5, 7)
    return {
        'r50_infer_800x1333': bb(50, k50, (1, 3, h, w), inference_step),
        'r50_train_800x1333': bb(50, k50, (1, 3, h, w), train_step),
        'r50_infer_2x512': bb(50, k50, (2, 3, half, half), inference_step),
        'r50_train_2x512': bb(50, k50, (2, 3, half, half), train_step),
        'maskrcnn_r50_infer_800x1333': det,
        'r101_infer_800x1333': bb(101, k101, (1, 3, h, w), inference_step),
        'r50_infer_800x1333_straightforward_eca': bb(
            50,
            k50,
            (1, 3, h, w),
            inference_step,
            fused=False,
            label='eca-plain-form',
        ),
        # ECA's fast paths against its paper form (single image, --size):
        # frozen BN (inference, detection training), train-mode BN
        'r50_infer_fast_vs_paper_eca': fast_vs_paper(inference_step),
        'r50_train_fast_vs_paper_eca': fast_vs_paper(train_step),
        'r50_train_bn_fast_vs_paper_eca': fast_vs_paper(
            train_step, norm_eval=False
        ),
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = CliArgumentParser(
        prog='tools/benchmark.py', description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        '--pairs',
        type=int,
        default=15,
        help='timed A/B pairs per case (at least 15)',
    )
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--cases',
        nargs='+',
        metavar='NAME',
        help='run only these cases (default: all)',
    )
    parser.add_argument(
        '--device',
        default=None,
        help='cpu or cuda (default: cuda when present)',
    )
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help="torch CPU threads (default: torch's)",
    )
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        default=(800, 1333),
        metavar=('H', 'W'),
        aliases=['--size'],
        help='single-image input size of the backbone cases',
    )
    parser.add_argument(
        '--batch-side',
        type=int,
        default=512,
        metavar='S',
        aliases=['--batch-size'],
        help='side of the batch-of-2 input (the *_2x512 cases)',
    )
    parser.add_argument(
        '--det-shape',
        type=int,
        nargs=2,
        default=(800, 1333),
        metavar=('H', 'W'),
        aliases=['--det-size'],
        help='input size of the detector case',
    )
    parser.add_argument('--json', metavar='OUT', help='also write JSON')
    return parser


def run_case_in_child(name):
    """Run one case in a fresh process with this process's options; return
    its timings."""
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, 'case.json')
        # argparse keeps the last --cases and --json: these override ours
        proc = subprocess.run(
            [
                sys.executable,
                osp.abspath(__file__),
                *sys.argv[1:],
                '--cases',
                name,
                '--json',
                out,
            ],
            stdout=subprocess.DEVNULL,
        )
        if proc.returncode != 0:  # its own error is on stderr above
            raise EcaMmdetError(
                f'case {name} failed in its process (exit status '
                f'{proc.returncode})'
            )
        with open(out) as f:
            case = json.load(f)['cases'][0]
    return PairTiming(
        case['name'],
        case['a_label'],
        case['b_label'],
        case['a_seconds'],
        case['b_seconds'],
    )


def main(args: argparse.Namespace) -> int:
    """Run the cases of ``args``; print the table, write the JSON."""
    device = torch.device(
        args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.json:  # before the minutes of timing, not after them
        check_output_location('--json', args.json, is_dir=False)
    table = cases(args, device)
    names = args.cases or list(table)
    unknown = sorted(set(names) - set(table))
    if unknown:
        raise EcaMmdetError(
            f'--cases: unknown case(s) {", ".join(unknown)}; known: '
            f'{", ".join(table)}'
        )
    # init_weights() logs every parameter at INFO: keep the table readable.
    from mmengine.logging import MMLogger

    MMLogger.get_instance('mmengine', log_level='WARNING')
    # what produced the figures: CPU model, cores, torch, commit, date, command
    env = dict(
        run_environment(device, REPO),
        threads=torch.get_num_threads(),
        channels_last=args.channels_last,
        pairs=args.pairs,
        warmup=args.warmup,
    )
    print('# ' + ', '.join(f'{k}={v}' for k, v in env.items()), flush=True)
    results = []
    for name in names:
        if len(names) > 1:
            results.append(run_case_in_child(name))
            continue
        run_a, run_b, a_label, b_label = table[name]()
        results.append(
            time_pairs(
                name,
                run_a,
                run_b,
                pairs=args.pairs,
                warmup=args.warmup,
                device=device,
                a_label=a_label,
                b_label=b_label,
                progress=lambda msg: print(msg, file=sys.stderr, flush=True),
            )
        )
    print(format_table(results))
    if args.json:
        atomic_write(
            json.dumps(
                dict(env=env, cases=[r.to_dict() for r in results]), indent=2
            ),
            args.json,
        )
        print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main, build_parser()))
