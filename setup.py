"""eca-mmdet: ECA-ResNet backbones for MMDetection 3.x.

mmcv has no wheel for recent torch: build it from source first, with the
compiled ops, against the installed torch (``make install`` does this):

    pip install torch numpy wheel ninja "setuptools<70"
    MAX_JOBS=2 pip install --no-build-isolation "mmcv==2.1.0"
"""
from setuptools import find_packages, setup

setup(
    name='eca-mmdet',
    version='0.1.0',
    description='ECA-ResNet (Efficient Channel Attention) backbones for '
    'MMDetection 3.x, with exact converters for official and timm weights',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['eca_mmdet', 'eca_mmdet.*']),
    package_data={'eca_mmdet': ['models/*.json']},
    python_requires='>=3.8',
    install_requires=[
        'torch>=1.8',
        'numpy<2',
        'mmengine>=0.10,<0.11',
        'mmcv>=2.0.0rc4,<2.2.0',  # build from source, see module docstring
        'mmdet==3.3.0',
        'pycocotools',
        'Pillow',
        'safetensors',
    ],
    extras_require={'tests': ['pytest']},
    license='Apache-2.0',
)
