"""load_fitting_checkpoint: the one check that a checkpoint fits a model
(used by the backbone's pretrained weights, load_detector, test, resume,
export and the attention tool) and strip_prefix."""

import pytest
import torch
from torch import nn

from eca_mmdet.engine.checkpoint import (
    CheckpointLoadError,
    CheckpointMismatchError,
    load_fitting_checkpoint,
    strip_prefix,
)


def _model(width=3):
    torch.manual_seed(width)
    return nn.Sequential(nn.Conv2d(2, width, 1), nn.BatchNorm2d(width))


def _save(path, state, **extra):
    torch.save(dict(state_dict=state, **extra), path)
    return str(path)


def test_a_fitting_checkpoint_is_returned_and_loaded(tmp_path):
    source = _model()
    with torch.no_grad():
        for p in source.parameters():
            p.uniform_(-1, 1)
    state = {
        k: v
        for k, v in source.state_dict().items()
        if not k.endswith('num_batches_tracked')  # never required
    }
    path = _save(tmp_path / 'a.pth', state, meta=dict(epoch=3))
    target = _model()
    fitted = load_fitting_checkpoint(target, path)
    assert fitted.checkpoint['meta'] == dict(epoch=3)
    assert sorted(fitted.state_dict) == sorted(state)
    assert not torch.equal(target[0].weight, source[0].weight)  # load=False
    load_fitting_checkpoint(target, path, load=True)
    for k, v in state.items():
        assert torch.equal(target.state_dict()[k], v), k


def test_the_message_names_file_model_keys_and_fix(tmp_path):
    path = _save(tmp_path / 'b.pth', _model(width=4).state_dict())
    with pytest.raises(CheckpointMismatchError) as info:
        load_fitting_checkpoint(
            _model(width=3),
            path,
            'the model of c.py',
            what='--resume: checkpoint',
            fix='use the config it was trained with',
        )
    assert str(info.value) == (
        f'--resume: checkpoint {path} does not fit the model of c.py: '
        'shape mismatch 6: 0.weight: checkpoint (4, 2, 1, 1) vs model '
        '(3, 2, 1, 1); 0.bias: checkpoint (4,) vs model (3,); 1.weight: '
        'checkpoint (4,) vs model (3,) (+3 more); '
        'use the config it was trained with'
    )


def test_prefix_unexpected_keys_and_fix_from_the_state(tmp_path):
    """A detector's checkpoint: the model's weights under ``backbone.``,
    besides a head the model lacks."""
    source = _model()
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(2, 2)
    state['backbone.fc.weight'] = torch.zeros(2, 2)  # e.g. a classifier
    path = _save(tmp_path / 'det.pth', state)
    fitted = load_fitting_checkpoint(
        _model(), path, prefix='backbone', ignore_unexpected=True, load=True
    )
    assert 'fc.weight' in fitted.state_dict
    assert not any(
        k.startswith(('backbone.', 'head.')) for k in fitted.state_dict
    )
    seen = []

    def fix(weights):
        seen.append(sorted(weights))
        return 'hint'

    with pytest.raises(
        CheckpointMismatchError,
        match=r"det\.pth \(prefix 'backbone\.'\) does not fit the model: "
        r'not in model 1: fc\.weight; hint$',
    ):
        load_fitting_checkpoint(_model(), path, prefix='backbone.', fix=fix)
    assert seen == [sorted(fitted.state_dict)]


def test_data_parallel_prefixes_and_wrappers(tmp_path):
    """'module.' keys of a DataParallel checkpoint fit the bare model, and
    a wrapped model is checked as the model it wraps."""
    source = _model()
    wrapped = nn.DataParallel(source)
    path = _save(tmp_path / 'dp.pth', wrapped.state_dict())
    assert all(k.startswith('module.') for k in torch.load(path)['state_dict'])
    load_fitting_checkpoint(_model(), path)
    load_fitting_checkpoint(nn.DataParallel(_model()), path)


def test_an_already_loaded_checkpoint_is_not_read_again(tmp_path):
    source = _model()
    checkpoint = dict(state_dict=source.state_dict())
    missing = str(tmp_path / 'not_there.pth')
    fitted = load_fitting_checkpoint(_model(), missing, checkpoint=checkpoint)
    assert fitted.checkpoint is checkpoint
    with pytest.raises(CheckpointLoadError, match='checkpoint not found'):
        load_fitting_checkpoint(_model(), missing)


def test_strip_prefix():
    state = {'backbone.a': 1, 'backbone.b.c': 2, 'neck.a': 3, 'backbonex': 4}
    assert strip_prefix(state, 'backbone') == {'a': 1, 'b.c': 2}
    assert strip_prefix(state, 'backbone.') == {'a': 1, 'b.c': 2}
    assert strip_prefix(state, 'backbone', keep_others=True) == {
        'a': 1,
        'b.c': 2,
        'neck.a': 3,
        'backbonex': 4,
    }
