"""The fast ECA paths on CUDA, in float32 and under fp16 autocast, against
the paper's form. Skipped without a CUDA device."""

import pytest
import torch
from reference_resnet import eca_reference, randomize_batch_norms

from eca_mmdet.models import ECABottleneck, ECALayer, ECAResNet
from eca_mmdet.models.eca_fast import frozen_norm3_affine, gate_in_add

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA device'
)
CUDA = 'cuda'


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def _frozen_bn_bottleneck(channels=32, planes=8):
    """An ECA bottleneck in eval mode with non-trivial BN statistics: the
    frozen-BN fold applies."""
    torch.manual_seed(0)
    block = randomize_batch_norms(ECABottleneck(channels, planes))
    with torch.no_grad():
        block.eca.conv.weight.normal_()
    block = block.to(CUDA).eval()
    assert frozen_norm3_affine(block) is not None
    return block


@pytest.mark.parametrize('channels_last', [False, True])
def test_gate_in_add_forward_backward_on_cuda(channels_last):
    torch.manual_seed(0)
    layer = ECALayer(64, 5).to(CUDA)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 64, 17, 12, device=CUDA).to(memory_format=fmt)
    idt = torch.randn(2, 64, 17, 12, device=CUDA)
    results = []
    for run in (gate_in_add, lambda eca, x, idt: idt + eca(x)):
        xs = x.clone().requires_grad_()
        ids = idt.clone().requires_grad_()
        out = run(layer, xs, ids)
        grads = torch.autograd.grad(
            out.sin().sum(), (xs, ids, layer.conv.weight)
        )
        results.append((out, *grads))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('channels_last', [False, True])
def test_frozen_bn_fold_forward_backward_on_cuda(channels_last):
    block = _frozen_bn_bottleneck()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 32, 9, 11, device=CUDA).to(memory_format=fmt)
    params = [block.conv3.weight, block.norm3.weight, block.eca.conv.weight]
    results = []
    for fused in (True, False):
        block.eca.fused = fused
        xs = x.clone().requires_grad_()
        out = block(xs)
        grads = torch.autograd.grad(out.sin().sum(), [xs, *params])
        results.append((out, *grads))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_gate_in_add_under_fp16_autocast():
    """fp16 autocast: the fused op runs, its output and gradients stay
    within fp16 rounding of the paper's form computed in float32."""
    torch.manual_seed(1)
    layer = ECALayer(64, 5).to(CUDA)
    y = torch.randn(2, 64, 16, 16, device=CUDA)
    idt = torch.randn(2, 64, 16, 16, device=CUDA)

    def run(autocast):
        ys = y.clone().requires_grad_()
        with torch.autocast(CUDA, dtype=torch.float16, enabled=autocast):
            # what convs give under autocast
            h, i = (ys.half(), idt.half()) if autocast else (ys, idt)
            out = gate_in_add(layer, h, i)
        out.float().square().sum().backward()
        return out, ys.grad

    out16, grad16 = run(True)
    assert out16.dtype == torch.float16
    ref = idt + eca_reference(y, layer.conv.weight.detach())
    assert _rel(out16, ref) < 5e-3
    _, grad32 = run(False)
    assert torch.isfinite(grad16).all()
    assert _rel(grad16, grad32) < 1e-2


def test_frozen_bn_fold_under_fp16_autocast():
    """The frozen-BN fold under fp16 autocast: output and input gradient
    within fp16 rounding of the paper's form in float32."""
    block = _frozen_bn_bottleneck(64, 16)
    x = torch.randn(2, 64, 16, 16, device=CUDA)
    results = []
    for fused, autocast in ((True, True), (False, False)):
        block.eca.fused = fused
        xs = x.clone().requires_grad_()
        with torch.autocast(CUDA, dtype=torch.float16, enabled=autocast):
            out = block(xs)
        out.float().square().sum().backward()
        results.append((out, xs.grad))
    (out16, grad16), (ref, grad32) = results
    assert out16.dtype == torch.float16
    # three convs in fp16 before the fold
    assert _rel(out16, ref) < 1e-2
    assert torch.isfinite(grad16).all()
    assert _rel(grad16, grad32) < 2e-2


@pytest.mark.parametrize('norm_eval', [True, False])
def test_backbone_fused_equals_paper_form_on_cuda(norm_eval):
    """Outputs and every gradient, frozen BN (norm3 + ECA + add as one op)
    and train-mode BN (gate folded into the add); float64 as on CPU, since
    batch statistics of a few pixels amplify float32 rounding."""
    torch.manual_seed(0)
    kwargs = dict(depth=50, zero_init_residual=False, norm_eval=norm_eval)
    fused = ECAResNet(**kwargs).to(CUDA, torch.float64)
    plain = ECAResNet(**kwargs, eca_fused=False).to(CUDA, torch.float64)
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, 96, 64, device=CUDA, dtype=torch.float64)
    results = []
    for model in (fused, plain):
        model.train()
        outs = model(x)
        loss = sum(o.square().mean() for o in outs)
        params = [p for p in model.parameters() if p.requires_grad]
        results.append((outs, torch.autograd.grad(loss, params)))
    for a, b in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(a, b)
    assert len(results[0][1]) > 100
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)


def test_backbone_inference_under_fp16_autocast():
    torch.manual_seed(0)
    fused = ECAResNet(depth=50, zero_init_residual=False).to(CUDA).eval()
    plain = ECAResNet(depth=50, eca_fused=False).to(CUDA).eval()
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(1, 3, 128, 128, device=CUDA)
    with torch.no_grad():
        reference = plain(x)[-1]
        with torch.autocast(CUDA, dtype=torch.float16):
            out = fused(x)[-1]
    assert out.dtype == torch.float16
    assert _rel(out, reference) < 2e-2
