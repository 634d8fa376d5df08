"""The ECA layer and the ECAResNet backbone against mmdet's ResNet."""

import pytest
import torch
from mmdet.models.backbones import ResNet, ResNeXt
from mmdet.registry import MODELS
from reference_resnet import eca_reference, randomize_batch_norms

import eca_mmdet  # noqa: F401  (registers ECAResNet / ECALayer)
from eca_mmdet.models import (
    ARCH_PRESETS,
    ECABottleneck,
    ECALayer,
    ECAResNet,
    adaptive_kernel_size,
    stage_out_channels,
)
from eca_mmdet.models.eca_fast import (
    _ECAResidual,
    _ScaleShiftResidual,
    frozen_norm3_affine,
    gate_in_add,
)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    'channels,k',
    [
        (64, 3),
        (128, 5),
        (256, 5),
        (512, 5),
        (1024, 5),
        (2048, 7),
        (8, 3),
        (2, 3),
    ],
)
def test_adaptive_kernel_size(channels, k):
    # t = int(|(log2 C + 1) / 2|), odd, at least 3
    assert adaptive_kernel_size(channels) == k


def test_eca_layer_matches_paper_form():
    torch.manual_seed(0)
    eca = ECALayer(256)
    assert eca.k_size == 5 and eca.conv.padding == (2,)
    assert type(eca.padding) is int and eca.padding == 2
    x = torch.randn(2, 256, 7, 9)
    torch.testing.assert_close(eca(x), eca_reference(x, eca.conv.weight))
    identity = torch.randn_like(x)
    torch.testing.assert_close(
        gate_in_add(eca, x, identity),
        identity + eca_reference(x, eca.conv.weight),
    )


@pytest.mark.parametrize('bad', [0, -3, 4, 2.5, True])
def test_eca_layer_rejects_bad_k(bad):
    with pytest.raises(ValueError, match='odd'):
        ECALayer(64, bad)


@pytest.mark.parametrize(
    'depth,k,extra',
    [
        (50, (3, 5, 5, 7), 80),
        (50, None, 86),
        (101, (3, 3, 5, 7), 157),
        (18, (3, 5, 7, 7), 2 * (3 + 5 + 7 + 7)),
    ],
)
def test_parameter_overhead(depth, k, extra):
    eca = MODELS.build(dict(type='ECAResNet', depth=depth, eca_k_size=k))
    assert n_params(eca) - n_params(ResNet(depth=depth)) == extra


def _halved_last_norm_resnet(eca: ECAResNet) -> ResNet:
    """mmdet's ResNet carrying eca's weights with each block's last norm
    affine halved: what eca computes when every ECA gate is 0.5."""
    plain = ResNet(depth=eca.depth).double()
    plain.eval()  # mmdet's ResNet.train() returns None: no chaining
    state = {
        k: v.clone() for k, v in eca.state_dict().items() if '.eca.' not in k
    }
    last = 'bn3' if eca.depth >= 50 else 'bn2'
    for key in state:
        parts = key.split('.')
        if (
            key.startswith('layer')
            and parts[2] == last
            and parts[3] in ('weight', 'bias')
        ):
            state[key] = state[key] / 2
    plain.load_state_dict(state, strict=True)
    return plain


@pytest.mark.parametrize('depth', [18, 50])
def test_zero_eca_equals_halved_resnet(depth):
    torch.manual_seed(depth)
    eca = ECAResNet(depth=depth, zero_init_residual=False).double()
    eca.init_weights()
    with torch.no_grad():
        for name, p in eca.named_parameters():
            if name.endswith('eca.conv.weight'):
                p.zero_()
            elif 'bn' in name or 'downsample.1' in name:
                p.uniform_(0.5, 1.5) if name.endswith(
                    'weight'
                ) else p.uniform_(-0.2, 0.2)
        for name, b in eca.named_buffers():
            if name.endswith('running_mean'):
                b.uniform_(-0.1, 0.1)
            elif name.endswith('running_var'):
                b.uniform_(0.5, 1.5)
    eca.eval()
    plain = _halved_last_norm_resnet(eca)
    x = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        outs_eca, outs_plain = eca(x), plain(x)
    for a, b in zip(outs_eca, outs_plain):
        # to rounding: the fused ECA folds the gate into the frozen BN
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # and a non-zero ECA conv does change the output
    with torch.no_grad():
        eca.layer1[0].eca.conv.weight.fill_(1.0)
        assert not torch.equal(eca(x)[0], outs_plain[0])


def test_gradients_reach_every_eca_conv():
    torch.manual_seed(0)
    model = ECAResNet(depth=50, zero_init_residual=False, norm_eval=False)
    model.init_weights()
    model.train()
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.square().mean() for o in outs).backward()
    eca_params = [
        (n, p)
        for n, p in model.named_parameters()
        if n.endswith('eca.conv.weight')
    ]
    assert len(eca_params) == 16
    for name, p in eca_params:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_frozen_stages_freeze_eca_too():
    model = ECAResNet(depth=50, frozen_stages=2)
    model.train()
    for name, p in model.named_parameters():
        frozen = name.startswith(
            ('stem', 'conv1', 'bn1', 'layer1.', 'layer2.')
        )
        assert p.requires_grad != frozen, name
    assert not model.layer2[0].eca.training
    assert model.layer3[0].eca.training


def test_zero_init_residual_zeroes_last_norm():
    model = ECAResNet(depth=50)
    model.init_weights()
    assert torch.all(model.layer2[1].norm3.weight == 0)
    model = ECAResNet(depth=18)
    model.init_weights()
    assert torch.all(model.layer1[0].norm2.weight == 0)


def test_mmdet_resnet_options_still_work():
    model = ECAResNet(
        depth=50,
        deep_stem=True,
        avg_down=True,
        style='caffe',
        out_indices=(1, 3),
        with_cp=True,
        norm_eval=False,
        dilations=(1, 1, 1, 2),
        strides=(1, 2, 2, 1),
    )
    model.train()
    outs = model(torch.randn(1, 3, 64, 64, requires_grad=True))
    assert [o.shape[1] for o in outs] == [512, 2048]
    assert outs[1].shape[-1] == 4  # last stage dilated, not strided
    outs[1].sum().backward()
    assert model.layer4[0].eca.conv.weight.grad is not None


def test_checkpointed_frozen_bn_blocks_give_the_same_gradients():
    """with_cp recomputes the fused frozen-BN + ECA op in backward; the
    gradients equal those of the uncheckpointed model."""
    torch.manual_seed(0)
    kwargs = dict(depth=50, norm_eval=True, zero_init_residual=False)
    plain = ECAResNet(**kwargs).double()
    checkpointed = ECAResNet(**kwargs, with_cp=True).double()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64, requires_grad=True)
    grads = []
    for model in (plain, checkpointed):
        model.train()
        assert frozen_norm3_affine(model.layer1[0]) is not None
        loss = model(x)[-1].square().mean()
        grads.append(torch.autograd.grad(loss, [x, *model.parameters()]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_eca_as_mmdet_resnet_plugin():
    plugins = [dict(cfg=dict(type='ECALayer'), position='after_conv3')]
    model = ResNeXt(depth=50, groups=32, base_width=4, plugins=plugins)
    ecas = [m for m in model.modules() if isinstance(m, ECALayer)]
    assert len(ecas) == 16
    assert [e.k_size for e in ecas][:3] == [5, 5, 5]  # 256 channels
    assert ecas[-1].k_size == 7  # 2048 channels
    assert model(torch.randn(1, 3, 64, 64))[3].shape[1] == 2048


@pytest.mark.parametrize('arch', sorted(ARCH_PRESETS))
def test_arch_presets_build_and_report_channels(arch):
    model = MODELS.build(dict(type='ECAResNet', arch=arch)).eval()
    expected = stage_out_channels(arch=arch)
    assert model.out_channels == expected
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == expected
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2]
    ks = [
        blocks[0].eca.k_size
        for blocks in (model.layer1, model.layer2, model.layer3, model.layer4)
    ]
    assert ks == [5, 5, 5, 7]  # timm: adaptive k from the unpruned width


def test_arch_structures():
    tiered = ECAResNet(arch='ecaresnet50t')
    assert [tiered.stem[i].out_channels for i in (0, 3, 6)] == [24, 32, 64]
    deep = ECAResNet(arch='ecaresnet101d')
    assert [deep.stem[i].out_channels for i in (0, 3, 6)] == [32, 32, 64]
    assert len(deep.layer3) == 23
    light = ECAResNet(arch='ecaresnetlight')
    assert [len(getattr(light, f'layer{i}')) for i in range(1, 5)] == [
        1,
        1,
        11,
        3,
    ]
    assert light.conv1.kernel_size == (7, 7)
    assert len(ECAResNet(arch='ecaresnet269d').layer3) == 48


@pytest.mark.parametrize(
    'kwargs,match',
    [
        (dict(arch='ecaresnet999'), 'unknown ECAResNet arch'),
        (dict(depth=51), 'invalid depth'),
        (dict(depth=50, eca_k_size=4), 'odd'),
        (dict(depth=50, eca_k_size=(3, 5, 0, 7)), r'eca_k_size\[2\]'),
        (dict(depth=50, eca_k_size=(3, 5, 7)), 'one kernel size per stage'),
        (dict(arch='ecaresnet50d', depth=101), 'has depth 50'),
    ],
)
def test_bad_arguments_are_explained(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ECAResNet(**kwargs)


def test_gate_in_add_gradients_match_paper_form():
    torch.manual_seed(0)
    # gradcheck perturbs every input element: 16 x 3 x 4 keeps it quick
    layer = ECALayer(16, 3).double()
    x = torch.randn(2, 16, 3, 4, dtype=torch.float64, requires_grad=True)
    idt = torch.randn(2, 16, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, idt: gate_in_add(layer, x, idt), (x, idt)
    )
    results = []
    for run in (gate_in_add, lambda eca, x, idt: idt + eca(x)):
        out = run(layer, x, idt)
        results.append(
            (
                out,
                *torch.autograd.grad(
                    out.square().sum(), (x, idt, layer.conv.weight)
                ),
            )
        )
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


def test_fused_eca_backward_gradcheck_with_the_weight():
    """The custom backward against numerical gradients, for x, identity and
    the conv weight, and with only some of them requiring gradients."""
    torch.manual_seed(1)
    x = torch.randn(2, 16, 3, 4, dtype=torch.float64)
    idt = torch.randn(2, 16, 3, 4, dtype=torch.float64)
    eca = ECALayer(16, 5).double()
    w = eca.conv.weight  # the Function's gate is the layer's
    with torch.no_grad():
        w.normal_()
    for needs in [
        (True, True, True),
        (False, False, True),
        (True, False, False),
        (False, True, False),
    ]:
        x_, idt_ = (
            t.clone().requires_grad_(r) for t, r in zip((x, idt), needs)
        )
        w.requires_grad_(needs[2])

        def run(x, idt, w):
            return _ECAResidual.apply(x, idt, w, eca)

        assert torch.autograd.gradcheck(run, (x_, idt_, w)), needs


@pytest.mark.parametrize('channels_last', [False, True])
def test_frozen_bn_fold_equals_paper_form_in_a_bottleneck(channels_last):
    """A bottleneck with frozen BN: norm3, the gate and the add as one
    affine map, ECA pooling conv3's input, equals conv3, norm3, the paper's
    ECA and the add (outputs and gradients of the input, conv3, norm3 and
    the ECA weight)."""
    torch.manual_seed(3)
    block = randomize_batch_norms(ECABottleneck(32, 8).double())
    with torch.no_grad():
        block.eca.conv.weight.normal_()
    block.eval()
    assert frozen_norm3_affine(block) is not None
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 32, 6, 5, dtype=torch.float64)
    x = x.to(memory_format=fmt).requires_grad_()
    params = [
        block.conv3.weight,
        block.norm3.weight,
        block.norm3.bias,
        block.eca.conv.weight,
    ]
    results = []
    for fused in (True, False):
        block.eca.fused = fused
        out = block(x)
        grads = torch.autograd.grad(out.sin().sum(), [x, *params])
        results.append((out, *grads))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('channels_last', [False, True])
def test_scale_shift_residual_gradcheck(channels_last):
    """The frozen-BN + ECA + add op against numerical gradients, through the
    BatchNorm-kernel route (contiguous) and the fallback (channels_last),
    with only some inputs requiring gradients."""
    torch.manual_seed(2)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    y = torch.randn(2, 6, 3, 4, dtype=torch.float64).to(memory_format=fmt)
    idt = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    scale = torch.randn(2, 6, 1, 1, dtype=torch.float64)
    shift = torch.randn(2, 6, 1, 1, dtype=torch.float64)
    for needs in [
        (True, True, True, True),
        (False, False, True, False),
        (True, False, False, True),
        (False, True, False, False),
    ]:
        args = [
            t.clone().requires_grad_(r)
            for t, r in zip((y, idt, scale, shift), needs)
        ]
        out = _ScaleShiftResidual.apply(*args)
        torch.testing.assert_close(out, y * scale + shift + idt)
        assert torch.autograd.gradcheck(_ScaleShiftResidual.apply, args), needs


def test_fused_eca_inplace_inference_writes_into_x():
    torch.manual_seed(0)
    layer = ECALayer(32, 3)
    x, idt = torch.randn(2, 32, 7, 5), torch.randn(2, 32, 7, 5)
    expected = idt + x * layer.gate(x)
    with torch.no_grad():
        kept = x.clone()
        out = gate_in_add(layer, x, idt)  # default: x untouched
        assert torch.equal(x, kept)
        out_inplace = gate_in_add(layer, x, idt, inplace=True)
    assert out_inplace.data_ptr() == x.data_ptr()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out_inplace, expected)


def test_backbone_training_gradients_fused_equal_straightforward():
    torch.manual_seed(0)
    fused = ECAResNet(depth=18, zero_init_residual=False).double()
    fused.init_weights()
    plain = ECAResNet(depth=18, eca_fused=False).double()
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, 64, 48, dtype=torch.float64)
    grads = []
    for model in (fused, plain):
        model.train()
        loss = sum(o.square().mean() for o in model(x))
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    for (name, _), a, b in zip(fused.named_parameters(), *grads):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize('bn_requires_grad', [False, True])
def test_frozen_bn_detection_training_matches_straightforward_form(
    bn_requires_grad,
):
    """mmdet's detection setting (norm_eval; BN affine frozen or not): the
    bottlenecks pool ECA's input through conv3 (a quarter of the channels);
    outputs and every gradient equal those of the paper's form, which pools
    norm3's output."""
    torch.manual_seed(0)
    kwargs = dict(
        depth=50,
        norm_eval=True,
        zero_init_residual=False,
        norm_cfg=dict(type='BN', requires_grad=bn_requires_grad),
    )
    fused = ECAResNet(**kwargs).double()
    fused.init_weights()
    with torch.no_grad():  # non-trivial running statistics
        for m in fused.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2)
    plain = ECAResNet(**kwargs, eca_fused=False).double()
    plain.load_state_dict(fused.state_dict())
    block = fused.layer2[1]
    x = torch.randn(2, 3, 64, 48, dtype=torch.float64)
    results = []
    for model in (fused, plain):
        model.train()  # BN stays in eval mode (norm_eval)
        outs = model(x)
        loss = sum(o.square().mean() for o in outs)
        params = [p for p in model.parameters() if p.requires_grad]
        results.append((outs, torch.autograd.grad(loss, params)))
    assert not block.norm3.training
    assert frozen_norm3_affine(block) is not None
    for a, b in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(a, b)
    assert len(results[0][1]) > (100 if bn_requires_grad else 16)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)


def test_backbone_fused_and_straightforward_agree():
    torch.manual_seed(0)
    fused = ECAResNet(depth=50, zero_init_residual=False)
    fused.init_weights()
    plain = ECAResNet(depth=50, eca_fused=False)
    plain.load_state_dict(fused.state_dict())
    assert not plain.layer3[2].eca.fused and fused.layer3[2].eca.fused
    fused.eval()
    plain.eval()
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        for a, b in zip(fused(x), plain(x)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _pretrained(checkpoint, prefix=None):
    cfg = dict(type='Pretrained', checkpoint=str(checkpoint))
    if prefix:
        cfg['prefix'] = prefix
    return cfg


def test_pretrained_checkpoint_that_fits_is_loaded(tmp_path):
    source = ECAResNet(depth=18, eca_k_size=(3, 3, 5, 5))
    with torch.no_grad():
        for p in source.parameters():
            p.uniform_(-1, 1)
    # a whole detector's checkpoint: the backbone under a prefix, plus heads
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state['roi_head.fc.weight'] = torch.zeros(2, 2)
    torch.save(dict(state_dict=state), tmp_path / 'det.pth')
    model = ECAResNet(
        depth=18,
        eca_k_size=(3, 3, 5, 5),
        init_cfg=_pretrained(tmp_path / 'det.pth', 'backbone.'),
    )
    model.init_weights()
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


@pytest.mark.parametrize('grad', [False, True])
def test_fused_eca_under_autocast(grad):
    """Mixed precision (CPU autocast to bfloat16 here; fp16 on CUDA): the
    in-place sum, the conv3 pooling route and the custom backward accept the
    autocast dtypes, and the result stays close to float32."""
    torch.manual_seed(0)
    model = ECAResNet(depth=50, zero_init_residual=False).eval()
    x = torch.randn(1, 3, 64, 64, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        reference = model(x)[-1]
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = model(x)[-1]
        if grad:
            out.float().sum().backward()
            assert x.grad is not None and torch.isfinite(x.grad).all()
    assert out.dtype == torch.bfloat16
    err = (out.float() - reference).abs().max() / reference.abs().max()
    assert err < 0.05, err


def _random_stats_backbone(fused=True, **kwargs):
    """An ECAResNet with non-trivial BatchNorm statistics and affines."""
    torch.manual_seed(0)
    model = ECAResNet(eca_fused=fused, zero_init_residual=False, **kwargs)
    return randomize_batch_norms(model).eval()


@pytest.mark.parametrize(
    'kwargs',
    [
        dict(depth=50),  # frozen BN: norm3 + ECA + add fused in eager mode
        dict(depth=18),
        dict(depth=50, norm_cfg=dict(type='GN', num_groups=8)),
    ],
)
def test_traced_default_backbone_runs_on_other_shapes(kwargs):
    """torch.jit.trace at one shape gives the paper's outputs at others
    (batch and image size): no sizes frozen into the trace."""
    kwargs = dict(kwargs, base_channels=16, stem_channels=16)
    fused = _random_stats_backbone(**kwargs)
    paper = _random_stats_backbone(fused=False, **kwargs)
    paper.load_state_dict(fused.state_dict())
    with torch.no_grad():
        traced = torch.jit.trace(
            fused, torch.randn(1, 3, 64, 96), check_trace=False
        )
        for size in [(2, 3, 96, 160), (3, 3, 72, 50)]:
            x = torch.randn(*size)
            for a, b in zip(traced(x), paper(x)):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # torch.compile: compiling takes longer than the rest
def test_compiled_default_backbone_inference_and_training():
    """torch.compile (dynamo with AOTAutograd, one graph: no breaks) of the
    default backbone: inference equals eager; in detection training (frozen
    BN with trainable affines) the loss and every gradient equal eager's."""
    model = _random_stats_backbone(
        depth=18, base_channels=16, stem_channels=16
    )
    x = torch.randn(2, 3, 64, 64)
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    with torch.no_grad():
        for a, b in zip(compiled(x), model(x)):
            torch.testing.assert_close(a, b)
    model = _random_stats_backbone(
        depth=26, base_channels=16, stem_channels=16, norm_eval=True
    ).train()
    assert frozen_norm3_affine(model.layer1[0]) is not None
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    results = []
    for run in (compiled, model):
        loss = sum(o.square().mean() for o in run(x))
        results.append(
            (loss, *torch.autograd.grad(loss, list(model.parameters())))
        )
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


def test_fused_eca_backward_under_autocast_with_batch_statistics():
    """The gate-in-the-add op (train-mode BN, GN, basic blocks) under
    autocast: its backward, run outside autocast, recomputes the gate in the
    dtype the forward's conv ran in; the gradient points where float32's
    does (train-mode BN on 2 small images magnifies bfloat16 rounding in
    single weights)."""
    torch.manual_seed(0)
    model = ECAResNet(
        depth=18, base_channels=16, stem_channels=16, zero_init_residual=False
    ).train()
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for autocast in (True, False):
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
            out = model(x)[-1]
        loss = out.float().square().mean()
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    for (name, p), a in zip(model.named_parameters(), grads[0]):
        assert a.dtype == p.dtype and torch.isfinite(a).all(), name
    flat = [torch.cat([g.flatten() for g in gs]) for gs in grads]
    assert torch.cosine_similarity(*flat, dim=0) > 0.99
