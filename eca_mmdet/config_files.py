"""Where the project's configs are, so a user's config can inherit one
without a path into the checkout.

mmengine 0.10's ``pkg::`` scope only resolves OpenMMLab packages, and its
pure-Python configs cannot inherit mmdet's text configs. mmengine evaluates
the ``_base_`` expression of a text config, so the path can be computed::

    _base_ = __import__('eca_mmdet').config_path('mask_rcnn_ecanet50_1x.py')

Configs are looked up in the installed package (``eca_mmdet/.mim/configs``,
filled by ``setup.py`` for non-editable installs) and then in the checkout's
``configs/`` (editable installs).
"""

import os.path as osp
from typing import List

__all__ = ['config_path', 'config_dirs']

_PACKAGE = osp.dirname(osp.abspath(__file__))
# configs that moved: old name -> new name
MOVED = {
    'finetune/mask_rcnn_ecanet50_custom.py': (
        'custom/mask_rcnn_ecanet50_finetune.py'
    ),
}


def config_dirs() -> List[str]:
    """The folders searched by :func:`config_path`, existing ones only."""
    dirs = [
        osp.join(_PACKAGE, '.mim', 'configs'),
        osp.join(osp.dirname(_PACKAGE), 'configs'),
    ]
    return [d for d in dirs if osp.isdir(d)]


def config_path(name: str) -> str:
    """The absolute path of the project config ``name`` (relative to
    ``configs/``, e.g. ``'mask_rcnn_ecanet50_1x.py'`` or
    ``'shapes/mask_rcnn_ecaresnet18_shapes.py'``).

    Raises:
        FileNotFoundError: no such config under ``configs/`` (an absolute
            path or one leading out of it is none); the message lists where
            it looked.
    """
    for folder in config_dirs():
        path = osp.normpath(osp.join(folder, name))
        # only files under the folder: not '/etc/passwd' nor '../x.py'
        inside = osp.realpath(path).startswith(osp.realpath(folder) + osp.sep)
        if inside and osp.isfile(path):
            return path
    moved = MOVED.get(osp.normpath(name).replace(osp.sep, '/'))
    if moved:
        raise FileNotFoundError(
            f'eca_mmdet config {name!r} is now {moved!r}: '
            f'config_path({moved!r})'
        )
    raise FileNotFoundError(
        f'eca_mmdet has no config {name!r} (looked in '
        f'{", ".join(config_dirs()) or "no config folder"}); the project '
        'configs are the files under configs/ of the repository'
    )
