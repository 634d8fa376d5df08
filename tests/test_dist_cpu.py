"""2-process CPU (gloo) training via tools/dist_train.sh (torchrun): it runs,
the model is wrapped in DDP, and both ranks end with identical weights."""

import shutil

import pytest
import torch
from tools_testlib import (
    DUMP_HOOK_MODULE,
    explain,
    free_port,
    read_json,
    run_tool,
    tool_env,
    write_config,
)

pytest.importorskip('mmdet')

if shutil.which('bash') is None:  # pragma: no cover
    pytest.skip('needs bash for tools/dist_train.sh', allow_module_level=True)


@pytest.fixture(scope='module')
def dist_run(tmp_path_factory, shapes_data):
    root = tmp_path_factory.mktemp('dist')
    data = shapes_data
    (root / 'hooks').mkdir()
    (root / 'hooks' / 'dump_rank_params.py').write_text(DUMP_HOOK_MODULE)
    config = write_config(
        root / 'tiny_shapes_dist.py',
        data,
        max_epochs=1,
        extra_imports=['dump_rank_params'],
        custom_hooks=[dict(type='DumpRankParamsHook')],
    )
    work = root / 'work'
    env = tool_env(extra_pythonpath=[root / 'hooks'])
    env['PORT'] = str(free_port())
    proc = run_tool(
        ['dist_train.sh', config, '2', '--work-dir', work], cwd=root, env=env
    )
    return dict(root=root, config=config, work=work, proc=proc, env=env)


@pytest.mark.slow
def test_two_rank_gloo_training_completes(dist_run):
    proc = dist_run['proc']
    assert proc.returncode == 0, explain(proc)
    assert 'Traceback' not in proc.stderr, explain(proc)
    assert (dist_run['work'] / 'epoch_1.pth').is_file()


@pytest.mark.slow
def test_ranks_end_with_identical_weights(dist_run):
    assert dist_run['proc'].returncode == 0, explain(dist_run['proc'])
    work = dist_run['work']
    r0 = torch.load(work / 'rank0_params.pth', weights_only=True)
    r1 = torch.load(work / 'rank1_params.pth', weights_only=True)
    assert (r0['world_size'], r1['world_size']) == (2, 2)
    assert (r0['rank'], r1['rank']) == (0, 1)
    assert r0['wrapper'] == r1['wrapper'] == 'CPUDistributedDataParallel'
    assert r0['params'].keys() == r1['params'].keys()
    assert len(r0['params']) > 50
    for name, value in r0['params'].items():
        assert torch.equal(value, r1['params'][name]), name

    # and they are the weights rank 0 saved
    from eca_mmdet.engine import safe_torch_load

    sd = safe_torch_load(work / 'epoch_1.pth')['state_dict']
    for name, value in r0['params'].items():
        assert torch.equal(value, sd[name]), name


@pytest.mark.slow
def test_two_rank_test_matches_single_process(dist_run, tmp_path):
    """tools/dist_test.sh on 2 CPU processes gives the metrics of one."""
    assert dist_run['proc'].returncode == 0, explain(dist_run['proc'])
    ckpt = dist_run['work'] / 'epoch_1.pth'
    # batch 1: the same padding in both runs, so the same predictions
    one_per_batch = ['--cfg-options', 'test_dataloader.batch_size=1']
    single = run_tool(
        [
            'test.py',
            dist_run['config'],
            ckpt,
            '--work-dir',
            tmp_path / 'single',
            *one_per_batch,
        ],
        cwd=dist_run['root'],
        env=dist_run['env'],
    )
    assert single.returncode == 0, explain(single)
    env = dict(dist_run['env'], PORT=str(free_port()))
    multi = run_tool(
        [
            'dist_test.sh',
            dist_run['config'],
            ckpt,
            '2',
            '--work-dir',
            tmp_path / 'multi',
            *one_per_batch,
        ],
        cwd=dist_run['root'],
        env=env,
    )
    assert multi.returncode == 0, explain(multi)
    one = read_json(tmp_path / 'single' / 'metrics.json')
    two = read_json(tmp_path / 'multi' / 'metrics.json')
    assert one.keys() == two.keys()
    assert one == two
