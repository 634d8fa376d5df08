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
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['eca_mmdet', 'eca_mmdet.*']),
    package_data={'eca_mmdet': ['models/*.json']},
    # The ranges are the tested ones (see docs/installation.md): Python 3.11
    # with torch 2.1.2 + numpy 1 and with torch 2.13.0 + numpy 2, both with
    # mmcv 2.1.0, mmengine 0.10.7 and mmdet 3.3.0; Python 3.8-3.10 and 3.12
    # are checked statically (tests/test_python_versions.py). Nothing here
    # pins a newer release of what an MMDetection environment already has,
    # so installing into one adds this package alone
    # (tests/test_install_reach.py).
    python_requires='>=3.8',
    install_requires=[
        'torch>=2.1',
        'numpy>=1.21',
        'mmengine>=0.10,<0.11',
        'mmcv>=2.0.0rc4,<2.2.0',  # build from source, see module docstring
        'mmdet==3.3.0',
        'pycocotools',
        'Pillow',
    ],
    extras_require={
        # tools/export_onnx.py (checked in onnxruntime)
        'onnx': ['onnx', 'onnxruntime'],
        # timm's .safetensors files (tools/convert_weights.py)
        'timm': ['safetensors'],
        # ruff pinned: its formatter's output changes between releases;
        # vermin checks the Python versions that are not run
        'tests': [
            'pytest',
            'pytest-xdist',
            'ruff==0.17.6',
            'vermin',
            'onnx',
            'onnxruntime',
            'safetensors',
        ],
    },
    license='Apache-2.0',
    cmdclass={'build_py': BuildPyWithConfigs},
)
