"""The image demo (``demo/image_demo.py``): predictions of a detector on
images, drawn and saved as JSON, in mmdet's demo output layout.

:func:`run_demo` writes ``OUT_DIR/vis/<image name>`` (renderings, stable
class colours) and ``OUT_DIR/preds/<image stem>.json`` (``labels``,
``scores``, ``bboxes`` and, for instance segmentation, ``masks`` as COCO RLE
with ``counts`` a str), like mmdet's ``DetInferencer`` with
``no_save_pred=False``, plus ``label_names``: the class name of each label
(``dataset_meta['classes']``); see :func:`prediction_dict`. The model comes
from :func:`~eca_mmdet.apis.load_detector` (weights-only, a checkpoint that
does not fit is refused).

An unreadable image among several (a folder or a glob) is skipped: a
``warning:`` line names it, the other images get their outputs and the exit
status is 0 (as training skips unreadable images); a single unreadable image,
or none readable, is an error (status 1). An image of more than
``max_pixels`` (:data:`MAX_IMAGE_PIXELS`, 36 megapixels, by default) is
treated the same way: mmdet pastes every predicted mask at the image's full
size (up to ``max_per_img`` = 100 of them, one byte per pixel each: 3.6 GB
at the limit, 10 GB for a 10000x10000 image). Images with the same file name from
different folders are refused (their outputs would overwrite each other).
"""

import json
import os.path as osp
import sys
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.structures.mask import encode_mask_results, mask2bbox
from mmengine.utils import ProgressBar
from PIL import Image

from ..engine.atomic_io import atomic_write
from ..visualization import (
    StableColorDetVisualizer,
    VisualizationError,
    read_image,
)
from .inference import predict
from .inputs import expand_images

__all__ = [
    'MAX_IMAGE_PIXELS',
    'prediction_dict',
    'readable_images',
    'run_demo',
]

#: The demo's image-size limit (width x height), see the module doc.
MAX_IMAGE_PIXELS = 36_000_000


def prediction_dict(data_sample, classes: Sequence[str]) -> Dict:
    """mmdet's ``DetInferencer.pred2dict`` of ``data_sample`` (``labels``,
    ``scores``, ``bboxes``, ``masks`` as RLE with ``counts`` a str) with
    ``label_names`` after ``labels``."""
    if 'pred_instances' not in data_sample:
        return {}
    pred = data_sample.pred_instances
    masks = pred.get('masks')
    pred = pred.numpy()
    result = {
        'labels': pred.labels.tolist(),
        'label_names': [classes[i] for i in pred.labels.tolist()],
        'scores': pred.scores.tolist(),
    }
    if 'bboxes' in pred:
        result['bboxes'] = pred.bboxes.tolist()
    if masks is not None:
        if 'bboxes' not in pred or pred.bboxes.sum() == 0:
            # dummy boxes (SOLO): the masks' boxes, as mmdet does
            result['bboxes'] = (
                mask2bbox(torch.as_tensor(masks).cpu()).numpy().tolist()
            )
        encoded = encode_mask_results(pred.masks)
        for rle in encoded:
            if isinstance(rle['counts'], bytes):
                rle['counts'] = rle['counts'].decode()
        result['masks'] = encoded
    return result


def _too_large(path: str, max_pixels: int) -> Optional[VisualizationError]:
    """The error for an image over ``max_pixels``, read from its header
    (None if it is not over, or PIL cannot read the header)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
    except Image.DecompressionBombError:
        width = height = None
    except Exception:  # noqa: BLE001 - read_image names the problem
        return None
    if width is not None and width * height <= max_pixels:
        return None
    size = (
        f'{width}x{height} pixels'
        if width is not None
        else "over Pillow's decompression limit"
    )
    return VisualizationError(
        f"image {path} is {size}, over the demo's limit of "
        f'{max_pixels / 1e6:g} megapixels (--max-pixels): mmdet pastes every '
        'predicted mask at the full image size; scale it down first'
    )


def readable_images(
    inputs: str, max_pixels: int = MAX_IMAGE_PIXELS
) -> Tuple[List[str], List[str]]:
    """The images of ``inputs`` that can be decoded and are at most
    ``max_pixels`` large. An unreadable or too large one is an error when it
    is the only image, else it is skipped with a ``warning:`` line naming it
    (the good ones still get their outputs)."""
    images = expand_images([inputs], allow_glob=True)
    readable, problems = [], []
    for path in images:  # before the model is built
        too_large = _too_large(path, max_pixels)
        if too_large is not None:
            problems.append(too_large)
            continue
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
            f'e.g. {problems[0]}'
        )
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
            'per folder, each with its own --out-dir'
        )
    return readable, [str(p) for p in problems]


def run_demo(
    model: torch.nn.Module,
    images: Sequence[str],
    out_dir: str,
    pred_score_thr: float = 0.3,
    batch_size: int = 1,
    show_progress: bool = True,
) -> List[Dict]:
    """Predict ``images`` (paths) with ``model`` in batches of
    ``batch_size``; write ``out_dir/vis/<name>`` (predictions scoring above
    ``pred_score_thr``) and ``out_dir/preds/<stem>.json`` (all of them).
    Returns the prediction dicts."""
    classes = tuple(model.dataset_meta.get('classes') or ())
    visualizer = StableColorDetVisualizer(
        name=f'eca_demo_visualizer_{id(model)}'
    ).set_meta(model.dataset_meta)
    progress = ProgressBar(len(images)) if show_progress else None
    results = []
    for start in range(0, len(images), batch_size):
        batch = list(images[start : start + batch_size])
        for path, sample in zip(batch, predict(model, batch)):
            name = osp.basename(path)
            visualizer.add_datasample(
                name,
                read_image(path),
                sample,
                draw_gt=False,
                pred_score_thr=pred_score_thr,
                out_file=osp.join(out_dir, 'vis', name),
            )
            result = prediction_dict(sample, classes)
            atomic_write(
                json.dumps(result),
                osp.join(out_dir, 'preds', f'{osp.splitext(name)[0]}.json'),
            )
            results.append(result)
            if progress is not None:
                progress.update()
    return results
