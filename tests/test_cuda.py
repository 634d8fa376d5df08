"""The fused ECA paths on CUDA, in float32 and under fp16 autocast, against
the paper's straightforward form. Skipped without a CUDA device."""

import pytest
import torch

from eca_mmdet.models import ECALayer, ECAResNet, eca_reference

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA device'
)
CUDA = 'cuda'


def _pair(channels, k):
    torch.manual_seed(0)
    fused = ECALayer(channels, k).to(CUDA)
    plain = ECALayer(channels, k, fused=False).to(CUDA)
    plain.load_state_dict(fused.state_dict())
    return fused, plain


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


@pytest.mark.parametrize('channels_last', [False, True])
def test_fused_residual_forward_backward_on_cuda(channels_last):
    fused, plain = _pair(64, 5)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 64, 17, 12, device=CUDA).to(memory_format=fmt)
    idt = torch.randn(2, 64, 17, 12, device=CUDA)
    results = []
    for layer in (fused, plain):
        xs = x.clone().requires_grad_()
        ids = idt.clone().requires_grad_()
        out = layer.forward_residual(xs, ids)
        grads = torch.autograd.grad(
            out.sin().sum(), (xs, ids, layer.conv.weight)
        )
        results.append((out, *grads))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fused_affine_residual_forward_backward_on_cuda():
    fused, plain = _pair(32, 3)
    y = torch.randn(2, 32, 9, 11, device=CUDA, requires_grad=True)
    idt = torch.randn(2, 32, 9, 11, device=CUDA)
    scale = torch.rand(32, device=CUDA, requires_grad=True)
    shift = torch.randn(32, device=CUDA, requires_grad=True)
    results = []
    for layer in (fused, plain):
        z = y * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
        out = layer.forward_affine_residual(
            y, idt, scale, shift, z.mean((2, 3))
        )
        grads = torch.autograd.grad(
            out.sin().sum(), (y, scale, shift, layer.conv.weight)
        )
        results.append((out, *grads))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('affine', [False, True])
def test_fused_paths_under_fp16_autocast(affine):
    """fp16 autocast: the fused op runs, its output and gradients stay
    within fp16 rounding of the paper's form computed in float32."""
    fused, _ = _pair(64, 5)
    torch.manual_seed(1)
    y = torch.randn(2, 64, 16, 16, device=CUDA)
    idt = torch.randn(2, 64, 16, 16, device=CUDA)
    scale = torch.rand(64, device=CUDA) + 0.5
    shift = torch.randn(64, device=CUDA)

    def run(layer, y, autocast):
        y = y.clone().requires_grad_()
        with torch.autocast(CUDA, dtype=torch.float16, enabled=autocast):
            # what convs give under autocast
            h, i = (y.half(), idt.half()) if autocast else (y, idt)
            if affine:
                z = h.float() * scale.view(1, -1, 1, 1) + shift.view(
                    1, -1, 1, 1
                )
                out = layer.forward_affine_residual(
                    h, i, scale, shift, z.mean((2, 3))
                )
            else:
                out = layer.forward_residual(h, i)
        out.float().square().sum().backward()
        return out, y.grad

    out16, grad16 = run(fused, y, True)
    assert out16.dtype == torch.float16
    with torch.no_grad():
        x = (
            y * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
            if affine
            else y
        )
    ref = idt + eca_reference(x, fused.conv.weight)
    assert _rel(out16, ref) < 5e-3
    _, grad32 = run(fused, y, False)
    assert torch.isfinite(grad16).all()
    assert _rel(grad16, grad32) < 1e-2


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
