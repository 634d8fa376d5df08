"""eca-mmdet: ECA-ResNet backbones for MMDetection 3.x.

mmcv has no wheel for recent torch: build it from source first, with the
compiled ops, against the installed torch (``make install`` does this):

    pip install torch numpy wheel ninja "setuptools<70"
    MAX_JOBS=2 pip install --no-build-isolation "mmcv==2.1.0"
"""

import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class BuildPyWithConfigs(build_py):
    """Ship ``configs/`` in the package as ``eca_mmdet/.mim/configs`` (as
    mmdet ships its configs), so ``eca_mmdet.config_path`` finds them in a
    non-editable install; an editable one reads the checkout's."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        target = os.path.join(self.build_lib, 'eca_mmdet', '.mim', 'configs')
        shutil.copytree(
            'configs',
            target,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns('__pycache__', '*.pyc'),
        )


setup(
    name='eca-mmdet',
    version='0.1.0',
    description='ECA-ResNet (Efficient Channel Attention) backbones for '
    'MMDetection 3.x, with exact converters for official and timm weights',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['eca_mmdet', 'eca_mmdet.*']),
    package_data={'eca_mmdet': ['models/*.json']},
    # Minimums are what has been tested: Python 3.11 (3.11.7) and torch
    # 2.13.0 CPU (`make install`). Nothing older has been run. The code
    # cannot work below torch 2.5 anyway (the checkpoint loader uses
    # torch.serialization.safe_globals and get_unsafe_globals_in_checkpoint);
    # between 2.5 and 2.13, and on Python < 3.11, it is untested.
    python_requires='>=3.11',
    install_requires=[
        'torch>=2.13',
        'numpy<2',
        'mmengine>=0.10,<0.11',
        'mmcv>=2.0.0rc4,<2.2.0',  # build from source, see module docstring
        'mmdet==3.3.0',
        'pycocotools',
        'Pillow',
        'safetensors',
    ],
    # onnx: tools/export_onnx.py (ONNX export checked in onnxruntime); the
    # tests use it too. numpy<2 above keeps onnx's ml_dtypes at a numpy 1
    # release (the newest ml_dtypes needs numpy 2).
    extras_require={
        'onnx': ['onnx', 'onnxruntime'],
        # ruff pinned: its formatter's output changes between releases
        'tests': ['pytest', 'ruff==0.17.6', 'onnx', 'onnxruntime'],
    },
    license='Apache-2.0',
    cmdclass={'build_py': BuildPyWithConfigs},
)
