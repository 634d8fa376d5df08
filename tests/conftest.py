"""Shared fixtures and markers of the test suite.

Tiers (markers registered below, in this one place)::

    make test-fast   # pytest -m "not slow": ECA layer and backbone,
                     # converters, safe loading, configs, COCO checks
    make test        # ruff + the whole suite (what CI runs)
    pytest -m "not slow or torch21" tests   # the older-stack selection

- ``slow``: trains a model, runs a tool end to end in a subprocess or
  exports a big model. Marked here automatically: every test of a module
  outside ``FAST_MODULES`` (the fast tier's areas) and every test that
  asks for ``trained_run`` or ``trained_work_copy``; inside those modules
  the slow tests carry ``@pytest.mark.slow``.
- ``torch21``: the end-to-end train / test / resume run and the loading
  of its checkpoint, which the older stack (torch 2.1) runs besides the
  fast tier.

Session fixtures (built once per pytest session, shared by every module;
treat them as read-only, copy before changing anything):

``shapes_data`` -> Path
    The tiny generated shapes set (``tools_testlib.make_dataset``: 8 train /
    4 val images of 64 px, seed 0, classes ``tools_testlib.CLASSES``, the
    COCO files in ``annotations/instances_{train,val}.json``).
``tiny_config`` -> Path
    The tiny Mask R-CNN config on ``shapes_data``
    (``tools_testlib.write_config``, ``max_epochs=TRAINED_EPOCHS``,
    validation after every epoch, ``EcaGateStatsHook`` and
    ``ProgressGifHook`` with ``tools_testlib.GIF_*``).
``trained_run`` -> dict
    One training of ``tiny_config`` by ``tools/train.py`` in a subprocess:
    ``root`` (cwd of the run, holding the data, the config and the work
    dir), ``data`` (= shapes_data), ``config``
    (= tiny_config), ``work`` (its work dir: ``epoch_1.pth`` ..
    ``epoch_{epochs}.pth``, ``last_checkpoint``, the logs and
    ``*/vis_data/scalars.json`` with the val metrics of every epoch,
    ``progress.gif`` and ``progress_frames/``, the saved config
    ``work / config.name``), ``checkpoints`` (the epoch checkpoints in
    order), ``epochs`` (= TRAINED_EPOCHS), ``train`` (the
    CompletedProcess, its stdout/stderr).

``own_data`` -> Path
    A data set unlike the shapes set, as a user brings their own
    (``own_dataset.make_own_dataset``: rings and crosses, 64 train / 16 val
    images of odd sizes, category ids 42 and 11, polygons, RLE, a crowd
    region, empty images) in the recipes' default layout
    (``annotations/{train,val}.json``, ``train/``, ``val/``) under
    ``own_data``; its classes are ``own_dataset.CLASSES``.

Function fixtures (a private copy under the test's ``tmp_path``):

``shapes_copy`` -> Path
    A copy of ``shapes_data`` to damage or edit.
``trained_work_copy`` -> Path
    A copy of ``trained_run['work']`` whose ``last_checkpoint`` points at
    the copy's last epoch (as moving a work dir requires).

Helpers stay plain functions in ``tools_testlib``: ``run_tool`` (a tool in
``tools/``), ``run_script`` (any script of the checkout), ``explain``,
``tool_env``, ``write_config``, ``run_config`` and ``train_in_process``
(an in-process Runner on a config), ``free_port``, ``read_json``.
"""

import shutil

import pytest
from own_dataset import make_own_dataset
from tools_testlib import (
    GIF_IMAGES,
    GIF_SCORE_THR,
    GIF_SIZE,
    TRAINED_EPOCHS,
    explain,
    make_dataset,
    run_tool,
    write_config,
)

TRAINING_FIXTURES = ('trained_run', 'trained_work_copy')
# the fast tier (make test-fast): its areas, by module
FAST_MODULES = {
    'test_ecaresnet.py': 'the ECA layer and the backbone',
    'test_cuda.py': 'the ECA layer on CUDA (skipped without it)',
    'test_convert.py': 'checkpoint converters',
    'test_safe_checkpoint.py': 'safe checkpoint loading',
    'test_configs.py': 'config building',
    'test_coco_check.py': 'COCO file checks',
    'test_shapes_dataset.py': 'the COCO-format shapes generator',
    'test_preflight.py': 'config and data checks before a run',
    'test_preflight_data.py': 'config and data checks before a run',
    'test_preflight_evaluator.py': 'config and data checks before a run',
    'test_install_reach.py': 'installing into an existing environment',
    'test_python_versions.py': 'the Python versions not run (vermin)',
    'test_custom_recipes.py': 'the recipes for your own data, their checks',
}


def pytest_configure(config):
    config.addinivalue_line(
        'markers',
        'slow: trains a model, runs a tool end to end in a subprocess or '
        'exports a big model (deselect with -m "not slow")',
    )
    config.addinivalue_line(
        'markers',
        'torch21: the end-to-end train/test/resume run the older stack '
        'runs besides the fast tier (-m "not slow or torch21")',
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.nodeid.split('::')[0].rsplit('/', 1)[-1]
        if module not in FAST_MODULES or any(
            name in TRAINING_FIXTURES for name in item.fixturenames
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope='session')
def shapes_data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp('shared') / 'shapes')


@pytest.fixture(scope='session')
def tiny_config(shapes_data):
    return write_config(
        shapes_data.parent / 'tiny_shapes.py',
        shapes_data,
        max_epochs=TRAINED_EPOCHS,
        custom_hooks=[
            dict(type='EcaGateStatsHook'),
            dict(
                type='ProgressGifHook',
                num_images=GIF_IMAGES,
                size=GIF_SIZE,
                score_thr=GIF_SCORE_THR,
            ),
        ],
        validate=True,
    )


@pytest.fixture(scope='session')
def trained_run(shapes_data, tiny_config):
    root = shapes_data.parent
    work = root / 'work'
    proc = run_tool(['train.py', tiny_config, '--work-dir', work], cwd=root)
    assert proc.returncode == 0, explain(proc)
    checkpoints = [
        work / f'epoch_{e}.pth' for e in range(1, TRAINED_EPOCHS + 1)
    ]
    return dict(
        root=root,
        data=shapes_data,
        config=tiny_config,
        work=work,
        checkpoints=checkpoints,
        epochs=TRAINED_EPOCHS,
        train=proc,
    )


@pytest.fixture(scope='session')
def own_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('own') / 'data'
    make_own_dataset(root)
    return root


@pytest.fixture
def shapes_copy(shapes_data, tmp_path):
    return shutil.copytree(shapes_data, tmp_path / 'shapes')


@pytest.fixture
def trained_work_copy(trained_run, tmp_path):
    work = shutil.copytree(trained_run['work'], tmp_path / 'work')
    last = work / trained_run['checkpoints'][-1].name
    (work / 'last_checkpoint').write_text(str(last))
    return work
