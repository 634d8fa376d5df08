"""The fast paths of ECA in residual blocks: the same sums, fewer passes.

The blocks of :mod:`~eca_mmdet.models.ecaresnet` compute
``identity + eca(branch)`` (:class:`~eca_mmdet.models.eca.ECALayer` is the
paper's form). With ``ECAResNet(eca_fused=True)`` (the default; the switch
is each layer's ``fused``) they call this module instead, which computes
the same values (tested equal, outputs and gradients, in float64) in fewer
passes over the block-sized tensors:

* **Gate in the add** (:func:`gate_in_add`; basic blocks, and bottlenecks
  whose norm3 uses batch statistics or GroupNorm): ``identity + x * gate``
  as one ``addcmul`` (in place without gradients), and a custom backward
  (:class:`_ECAResidual`) that makes two passes for the gradients of ``x``
  and of the gate instead of autograd's five.
* **Frozen-BN fold** (:func:`bottleneck_tail`; bottlenecks whose norm3 is
  a BatchNorm on running statistics, as in mmdet's detection configs):
  norm3, the gate and the add become one per-(sample, channel) affine map
  run by the BatchNorm kernel, with a backward (:class:`_ScaleShiftResidual`)
  of one BatchNorm-backward call, and ECA pools conv3's input (a quarter of
  the channels) since the mean commutes with a 1x1 conv and an affine map.
* **Graph capture** (:func:`graph_capture`: ``torch.jit.trace``, ONNX
  export, ``torch.compile``, ``torch.export``): custom autograd Functions do
  not export, so the gate is added with plain ops, keeping the pooling of
  conv3's input.

What they buy, as the time of ECAResNet-50 with the fast paths over the
same weights in the paper's form (mean of the fastest fifth of 15
alternating pairs; 1x3x512x512, one thread; AMD EPYC, 2 logical cores,
torch 2.13.0+cpu, Python 3.11.7; commit 179a86d, 2026-12-02; ``python
tools/benchmark.py --threads 1 --pairs 15 --size 512 512 --cases
r50_infer_fast_vs_paper_eca r50_train_fast_vs_paper_eca
r50_train_bn_fast_vs_paper_eca``)::

    inference, frozen BN (frozen-BN fold)             0.943
    training step, frozen BN as in mmdet's detectors  0.944
    training step, train-mode BN (gate in the add)    0.980

(A compile job shared the 2 cores: the per-pair ratios spread from 0.74
to 1.11.) The graph-capture form buys exportability: the paper's
arithmetic in plain ops, whose graph pools a quarter of the channels
where the frozen-BN fold applies (checked by tests/test_onnx_export.py).
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .eca import ECALayer, eca_gate

# torch >= 2.3: torch.compiler.is_compiling; torch 2.1 and 2.2 have
# torch._utils.is_compiling, which dynamo also reads as True.
_is_compiling = getattr(
    getattr(torch, 'compiler', None), 'is_compiling', None
) or getattr(torch._utils, 'is_compiling', lambda: False)


def graph_capture() -> bool:
    """Whether the model is being captured as a graph: ``torch.jit.trace``,
    ONNX export (the TorchScript exporter traces, the dynamo one runs
    ``torch.export``), ``torch.compile`` or ``torch.export``."""
    return torch.jit.is_tracing() or _is_compiling()


def gate_in_add(
    eca: ECALayer, x: Tensor, identity: Tensor, inplace: bool = False
) -> Tensor:
    """``identity + eca(x)``, the gate folded into the add.

    Args:
        inplace (bool): Without gradients, write the sum into ``x`` (as
            ResNet's ``out += identity`` does); the blocks pass True.
    """
    if graph_capture():
        return identity + eca(x)
    weight = eca.conv.weight
    if torch.is_grad_enabled() and any(
        t.requires_grad for t in (x, identity, weight)
    ):
        return _ECAResidual.apply(x, identity, weight, eca)
    return torch.addcmul(identity, x, eca.gate(x), out=x if inplace else None)


def bottleneck_tail(block: nn.Module, out: Tensor, identity: Tensor) -> Tensor:
    """``identity + eca(norm3(conv3(out)))`` of an ECA bottleneck (with its
    ``after_conv3`` plugins after norm3), ``out`` being conv2's activated
    output: the frozen-BN fold where :func:`frozen_norm3_affine` allows it,
    else :func:`gate_in_add`."""
    affine = frozen_norm3_affine(block)
    if affine is None:
        out = block.norm3(block.conv3(out))
        if block.with_plugins:
            out = block.forward_plugin(out, block.after_conv3_plugin_names)
        return gate_in_add(block.eca, out, identity, inplace=True)
    scale, shift = affine
    pooled = F.linear(out.mean((2, 3)), block.conv3.weight.flatten(1))
    gate = block.eca.gate_of_pooled(pooled * scale + shift)
    out = block.conv3(out)
    if graph_capture():
        # norm3 as a module, which exporters and compilers fold into conv3
        return identity + block.norm3(out) * gate.to(out.dtype)
    c = scale.numel()
    gate_scale = (scale.view(1, c, 1, 1) * gate).to(out.dtype)
    gate_shift = (shift.view(1, c, 1, 1) * gate).to(out.dtype)
    if torch.is_grad_enabled() and any(
        t.requires_grad for t in (out, identity, gate_scale, gate_shift)
    ):
        return _ScaleShiftResidual.apply(out, identity, gate_scale, gate_shift)
    return _scale_shift(out, gate_scale, gate_shift, inplace=True).add_(
        identity
    )


def frozen_norm3_affine(block: nn.Module) -> Optional[Tuple[Tensor, Tensor]]:
    """A bottleneck's norm3 as a per-channel ``(scale, shift)``, when the
    frozen-BN fold applies: norm3 a BatchNorm on its running statistics
    (eval mode, or frozen as in mmdet's detection configs), conv3 a plain
    bias-free 1x1 conv (so ECA's pooling commutes with it), no plugins
    after conv3. None otherwise (train-mode BN, GN, ...)."""
    conv, norm = block.conv3, block.norm3
    if norm.training or (
        block.with_plugins and block.after_conv3_plugin_names
    ):
        return None
    if (
        type(conv) is not nn.Conv2d
        or conv.kernel_size != (1, 1)
        or conv.stride != (1, 1)
        or conv.groups != 1
        or conv.padding != (0, 0)
        or conv.bias is not None
    ):
        return None
    if not isinstance(norm, _BatchNorm) or norm.running_mean is None:
        return None
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    return scale, shift + norm.bias if norm.bias is not None else shift


class _ECAResidual(torch.autograd.Function):
    """``identity + x * eca.gate(x)`` with a backward of two passes over the
    block-sized tensors.

    Autograd's own graph for the same expression saves ``x`` twice and
    materialises ``g * x`` (for the gate), ``g * gate`` and the pooled
    gradient broadcast, then adds the two gradients of ``x``. Here: the
    gate's gradient is a dot product per channel (``g`` and ``x`` read once,
    nothing written), and ``x``'s gradient ``g * gate + dpooled / HW`` is
    written in one pass. The gate itself (a few hundred numbers) is
    differentiated by autograd in ``backward``.
    """

    @staticmethod
    def forward(
        ctx, x: Tensor, identity: Tensor, weight: Tensor, eca: ECALayer
    ) -> Tensor:
        pooled = x.mean((2, 3))
        gate = eca.gate_of_pooled(pooled)  # from ``weight``
        ctx.padding = eca.padding
        ctx.save_for_backward(x, pooled, weight, gate)
        return torch.addcmul(identity, x, gate)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, pooled, weight, gate = ctx.saved_tensors
        n, c, h, w = x.shape
        need_x, need_identity, need_weight, _ = ctx.needs_input_grad
        grad_x = grad_weight = None
        if need_x or need_weight:
            # d loss / d gate: sum over H, W of grad * x, per (n, c)
            dgate = torch.einsum('nchw,nchw->nc', grad, x)
            with torch.enable_grad():
                p = pooled.detach().requires_grad_(need_x)
                # in the dtype autocast ran the forward's conv in (backward
                # runs outside autocast)
                wt = (
                    weight.detach()
                    .to(pooled.dtype)
                    .requires_grad_(need_weight)
                )
                inputs = [t for t in (p, wt) if t.requires_grad]
                gate_again = eca_gate(p, wt, ctx.padding).view(n, c)
                grads = list(torch.autograd.grad(gate_again, inputs, dgate))
            dpooled = grads.pop(0) if need_x else None
            grad_weight = (
                grads.pop(0).to(weight.dtype) if need_weight else None
            )
        if need_x:
            grad_x = torch.addcmul(
                dpooled.view(n, c, 1, 1) / (h * w), grad, gate
            )
        return grad_x, grad if need_identity else None, grad_weight, None


def _scale_shift(
    y: Tensor, scale: Tensor, shift: Tensor, inplace: bool = False
) -> Tensor:
    """``y * scale + shift`` with (N, C, 1, 1) ``scale`` and ``shift``: by
    the BatchNorm inference kernel (each (n, c) a channel) on a contiguous
    ``y``, the kernel a frozen BN runs anyway; else ``addcmul`` (into ``y``
    when ``inplace``)."""
    n, c, h, w = y.shape
    if not y.is_contiguous():
        return torch.addcmul(shift, y, scale, out=y if inplace else None)
    stats = y.new_zeros(n * c, dtype=scale.dtype)
    out = F.batch_norm(
        y.view(1, n * c, h, w),
        stats,
        torch.ones_like(stats),
        scale.reshape(n * c),
        shift.reshape(n * c),
        False,
        0.0,
        0.0,
    )
    # not a view: the blocks' in-place ReLU may then modify a custom
    # Function's output
    return torch.ops.aten._unsafe_view(out, (n, c, h, w))


class _ScaleShiftResidual(torch.autograd.Function):
    """``y * scale + shift + identity`` with ``scale``, ``shift`` of shape
    (N, C, 1, 1): a per-sample BatchNorm-like affine map plus the shortcut.

    Backward: ``y``'s gradient ``g * scale`` and the per-(n, c) sums
    ``sum(g * y)`` and ``sum(g)`` (the gradients of ``scale`` and ``shift``)
    come from one call of the BatchNorm backward kernel, treating each
    (n, c) as a channel, i.e. the pass a frozen BatchNorm's backward makes
    anyway.
    """

    @staticmethod
    def forward(
        ctx, y: Tensor, identity: Tensor, scale: Tensor, shift: Tensor
    ) -> Tensor:
        ctx.save_for_backward(y, scale)
        return _scale_shift(y, scale, shift).add_(identity)

    @staticmethod
    def backward(ctx, grad: Tensor):
        y, scale = ctx.saved_tensors
        need_y, need_identity, need_scale, need_shift = ctx.needs_input_grad
        n, c, h, w = y.shape
        grad_y = grad_scale = grad_shift = None
        if y.is_contiguous() and grad.is_contiguous():
            nc = n * c
            stats = y.new_zeros(nc, dtype=scale.dtype)
            grad_y, grad_scale, grad_shift = (
                torch.ops.aten.native_batch_norm_backward(
                    grad.view(1, nc, h, w),
                    y.view(1, nc, h, w),
                    scale.reshape(nc),
                    stats,
                    torch.ones_like(stats),
                    None,
                    None,
                    False,
                    0.0,
                    [need_y, need_scale, need_shift],
                )
            )
            grad_y = grad_y.view(n, c, h, w) if need_y else None
            grad_scale = grad_scale.view(n, c, 1, 1) if need_scale else None
            grad_shift = grad_shift.view(n, c, 1, 1) if need_shift else None
        else:  # e.g. channels_last
            if need_y:
                grad_y = grad * scale
            if need_scale:
                grad_scale = torch.einsum('nchw,nchw->nc', grad, y).view(
                    n, c, 1, 1
                )
            if need_shift:
                grad_shift = grad.sum((2, 3), keepdim=True)
        return (
            grad_y,
            grad if need_identity else None,
            grad_scale,
            grad_shift,
        )
