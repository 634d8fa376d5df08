"""``demo/image_demo.py``: mmdet's :class:`~mmdet.apis.DetInferencer` with
stable class colours, weights-only strict checkpoint loading and one-line
errors.

Writes ``OUT_DIR/vis/<image name>`` (renderings) and
``OUT_DIR/preds/<image stem>.json`` (``labels``, ``scores``, ``bboxes`` and,
for instance segmentation, ``masks`` as COCO RLE with ``counts`` a str), like
mmdet's own ``demo/image_demo.py`` with ``no_save_pred=False``, plus
``label_names``: the class name of each label (``dataset_meta['classes']``).

An unreadable image among several (a folder or a glob) is skipped: a
``warning:`` line names it, the other images get their outputs and the exit
status is 0 (as training skips unreadable images); a single unreadable image,
or none readable, is an error (status 1). Images with the same file name from
different folders are refused (their outputs would overwrite each other).
"""
import argparse
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import mmengine
from mmdet.apis import DetInferencer

from ..engine.checkpoint import (CheckpointMismatchError, checkpoint_mismatch,
                                 state_dict_of)
from ..visualization import (StableColorDetVisualizer, VisualizationError,
                             check_score_thr, read_image)
from .common import CliArgumentParser, load_config, run_cli
from .inputs import expand_images

__all__ = ['EcaDetInferencer', 'image_demo_main']


class EcaDetInferencer(DetInferencer):
    """:class:`DetInferencer` that refuses a checkpoint which does not fit
    the config (instead of loading what matches and leaving the rest random)
    and draws with :class:`StableColorDetVisualizer`.

    Checkpoints are read through mmengine's loaders, i.e. with the
    weights-only loader of :mod:`eca_mmdet.engine` (registered on import).

    Each prediction dict (returned, and written to ``preds/*.json``) carries
    ``label_names`` next to ``labels``: the model's class name of each label.
    """

    def _load_weights_to_model(self, model, checkpoint, cfg) -> None:
        if checkpoint is not None:
            problem = checkpoint_mismatch(model, state_dict_of(checkpoint))
            if problem:
                raise CheckpointMismatchError(
                    f'checkpoint {self._weights_path} does not fit the '
                    f'config\'s model: {problem}')
        super()._load_weights_to_model(model, checkpoint, cfg)

    def _init_visualizer(self, cfg) -> StableColorDetVisualizer:
        visualizer = StableColorDetVisualizer(
            name=f'eca_demo_visualizer_{id(self)}')
        visualizer.dataset_meta = self.model.dataset_meta
        return visualizer

    def __init__(self, model=None, weights: Optional[str] = None,
                 **kwargs) -> None:
        self._weights_path = weights
        super().__init__(model=model, weights=weights, **kwargs)

    def pred2dict(self, data_sample, pred_out_dir: str = '') -> Dict:
        """mmdet's prediction dict with ``label_names`` after ``labels``;
        when saving, the JSON mmdet wrote is rewritten with them."""
        index = self.num_predicted_imgs  # mmdet's name for path-less inputs
        result = super().pred2dict(data_sample, pred_out_dir)
        if 'labels' not in result:
            return result
        classes = self.model.dataset_meta['classes']
        named = {}
        for key, value in result.items():
            named[key] = value
            if key == 'labels':
                named['label_names'] = [classes[i] for i in value]
        if pred_out_dir:
            # the path mmdet's pred2dict wrote to
            if 'img_path' in data_sample:
                stem = osp.splitext(osp.basename(data_sample.img_path))[0]
            else:
                stem = str(index)
            mmengine.dump(named, osp.join(pred_out_dir, 'preds',
                                          f'{stem}.json'))
        return named


def demo_parser() -> argparse.ArgumentParser:
    p = CliArgumentParser(
        prog='demo/image_demo.py',
        description='Detect objects in images with a config and a '
        'checkpoint; writes OUT_DIR/vis/NAME and OUT_DIR/preds/NAME.json. '
        'Unreadable images among several are skipped with a warning line '
        '(exit status 0).')
    p.add_argument('inputs', metavar='INPUTS',
                   help='an image file, a folder of images or a glob '
                   '(quote it)')
    p.add_argument('config')
    p.add_argument('--weights', required=True, metavar='CKPT')
    p.add_argument('--out-dir', default='outputs')
    p.add_argument('--device', default='cpu',
                   help='cpu, cuda or cuda:N')
    p.add_argument('--pred-score-thr', type=float, default=0.3,
                   help='draw predictions scoring above this, in [0, 1] '
                   '(the JSON has all of them)')
    p.add_argument('--batch-size', type=int, default=1, help='>= 1')
    p.add_argument('--no-progress', action='store_true',
                   help='no progress bar')
    return p


def _readable_images(inputs: str) -> Tuple[List[str], List[str]]:
    """The images of ``inputs`` that can be decoded. An unreadable one is
    an error when it is the only image, else it is skipped with a
    ``warning:`` line naming it (the good ones still get their outputs)."""
    images = expand_images([inputs], allow_glob=True)
    readable, problems = [], []
    for path in images:  # before the model is built
        try:
            read_image(path)
            readable.append(path)
        except VisualizationError as e:
            problems.append(e)
    if not readable:
        if len(problems) == 1:
            raise problems[0]
        raise VisualizationError(
            f'none of the {len(problems)} images of {inputs} can be read, '
            f'e.g. {problems[0]}')
    for problem in problems:
        print(f'warning: {problem}; skipping it', file=sys.stderr, flush=True)
    by_stem: Dict[str, List[str]] = {}
    for path in readable:  # mmdet writes vis/NAME and preds/STEM.json
        stem = osp.splitext(osp.basename(path))[0]
        by_stem.setdefault(stem, []).append(path)
    clash = next((p for p in by_stem.values() if len(p) > 1), None)
    if clash:
        stem = osp.splitext(osp.basename(clash[0]))[0]
        raise VisualizationError(
            f'{inputs}: {len(clash)} images would write the same outputs '
            f'(preds/{stem}.json): {", ".join(clash[:3])}; run the demo once '
            'per folder, each with its own --out-dir')
    return readable, [str(p) for p in problems]


def _image_demo(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise VisualizationError(
            f'--batch-size must be at least 1, got {args.batch_size}')
    check_score_thr(args.pred_score_thr, '--pred-score-thr')
    images, skipped = _readable_images(args.inputs)
    if not osp.isfile(args.weights):
        raise VisualizationError(f'checkpoint not found: {args.weights}')
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            raise VisualizationError(
                f'--device {args.device}: CUDA is not available here; use '
                '--device cpu')
    cfg = load_config(args.config)
    if 'init_cfg' in cfg.model.get('backbone', {}):
        cfg.model.backbone.init_cfg = None  # weights come from --weights
    inferencer = EcaDetInferencer(
        model=cfg, weights=args.weights, device=args.device,
        show_progress=not args.no_progress)
    inferencer(
        images,
        batch_size=args.batch_size,
        out_dir=args.out_dir,
        no_save_pred=False,
        pred_score_thr=args.pred_score_thr)
    print(f'{len(images)} image(s): renderings in '
          f'{osp.join(args.out_dir, "vis")}, predictions in '
          f'{osp.join(args.out_dir, "preds")}')
    if skipped:  # again at the end, where it is seen
        print(f'warning: skipped {len(skipped)} unreadable image(s) (no '
              f'outputs): {"; ".join(skipped)}', file=sys.stderr, flush=True)
    return 0


def image_demo_main(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli(_image_demo, demo_parser(), argv)
