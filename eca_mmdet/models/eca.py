"""Efficient Channel Attention (ECA-Net, CVPR 2020, arXiv:1910.03151)."""

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.registry import MODELS as ROOT_MODELS
from torch import Tensor, nn


def adaptive_kernel_size(channels: int, gamma: float = 2, b: float = 1) -> int:
    """The paper's k = psi(C): ``int(|(log2 C + b) / gamma|)``, made odd, at least 3."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return max(t if t % 2 else t + 1, 3)


def check_kernel_size(k_size: int, name: str = 'k_size') -> int:
    """Return ``k_size`` if it is a positive odd int, else raise ValueError."""
    if (
        isinstance(k_size, bool)
        or not isinstance(k_size, int)
        or k_size < 1
        or k_size % 2 == 0
    ):
        raise ValueError(
            f'{name} must be a positive odd integer '
            f'(the 1-D conv keeps the channel count), got {k_size!r}'
        )
    return k_size


# In mmdet's registry for configs, and in mmengine's root registry where
# mmcv's build_plugin_layer looks when no default scope is set.
@ROOT_MODELS.register_module()
@MODELS.register_module()
class ECALayer(nn.Module):
    """Efficient Channel Attention: pool, 1-D conv across channels, sigmoid, scale.

    Also usable as an mmdet ResNet plugin, e.g.
    ``plugins=[dict(cfg=dict(type='ECALayer'), position='after_conv3')]``
    (mmcv passes the channel count as ``in_channels``).

    Args:
        channels (int, optional): Input channels; used only to pick k adaptively.
        k_size (int, optional): Kernel size of the 1-D conv (odd). ``None``
            picks it from ``channels`` with :func:`adaptive_kernel_size`.
        gamma (float): gamma of the adaptive rule. Defaults to 2.
        b (float): b of the adaptive rule. Defaults to 1.
        in_channels (int, optional): Alias of ``channels`` for plugin use.
        fused (bool): In :meth:`forward_residual`, fold the gate into the
            residual add (one pass, the default); False runs the paper's
            straightforward form (:func:`eca_reference`) for comparison.
    """

    _abbr_ = 'eca'
    # Called with (layer, gate) for every gate this layer computes, while
    # eca_mmdet.models.record_gates is active; otherwise None, and the only
    # cost is this check.
    gate_sink: Optional[Callable[['ECALayer', Tensor], None]] = None

    def __init__(
        self,
        channels: Optional[int] = None,
        k_size: Optional[int] = None,
        gamma: float = 2,
        b: float = 1,
        in_channels: Optional[int] = None,
        fused: bool = True,
    ) -> None:
        super().__init__()
        channels = channels if channels is not None else in_channels
        if k_size is None:
            if channels is None:
                raise ValueError(
                    'ECALayer needs channels (or in_channels) '
                    'when k_size is None'
                )
            k_size = adaptive_kernel_size(channels, gamma, b)
        self.k_size = check_kernel_size(k_size)
        self.fused = fused
        self.conv = nn.Conv1d(
            1, 1, self.k_size, padding=self.k_size // 2, bias=False
        )

    def gate(self, x: Tensor) -> Tensor:
        """The per-channel attention weights of ``x``, shaped (N, C, 1, 1)."""
        if graph_capture():
            gate = _plain_gate(x.mean((2, 3)), self.conv.weight)
        else:
            gate = _gate(x.mean((2, 3)), self.conv.weight)
        if self.gate_sink is not None:
            self.gate_sink(self, gate)
        return gate

    def forward(self, x: Tensor) -> Tensor:
        """Scale ``x`` by its channel attention."""
        return x * self.gate(x)

    def forward_residual(
        self, x: Tensor, identity: Tensor, inplace: bool = False
    ) -> Tensor:
        """``identity + self(x)``.

        Fused (default): the gate is folded into the add, and when gradients
        are needed a custom backward (:class:`_ECAResidual`) makes one pass
        for the gate's gradient and one for ``x``'s instead of autograd's
        five. Under :func:`graph_capture` (tracing, export, compile):
        plain ops, ``addcmul`` of the gate.

        Args:
            x (Tensor): The residual branch, (N, C, H, W).
            identity (Tensor): The shortcut.
            inplace (bool): Without gradients, write the sum into ``x`` (as
                ResNet's ``out += identity`` does); the blocks pass True.
        """
        if not self.fused:
            gate = eca_gate_reference(x, self.conv.weight)
            if self.gate_sink is not None:
                self.gate_sink(self, gate)
            return identity + x * gate.expand_as(x)
        weight = self.conv.weight
        if graph_capture():
            gate = _plain_gate(x.mean((2, 3)), weight, x.dtype)
            if self.gate_sink is not None:
                self.gate_sink(self, gate)
            return _add_scaled(identity, x, gate)
        if torch.is_grad_enabled() and any(
            t.requires_grad for t in (x, identity, weight)
        ):
            if self.gate_sink is not None:  # the gate _ECAResidual computes
                self.gate_sink(
                    self, _gate(x.detach().mean((2, 3)), weight.detach())
                )
            return _ECAResidual.apply(x, identity, weight)
        gate = _gate(x.mean((2, 3)), weight)
        if self.gate_sink is not None:
            self.gate_sink(self, gate)
        return torch.addcmul(identity, x, gate, out=x if inplace else None)

    def forward_affine_residual(
        self,
        y: Tensor,
        identity: Tensor,
        scale: Tensor,
        shift: Tensor,
        pooled: Tensor,
        inplace: bool = False,
    ) -> Tensor:
        """``identity + self(y * scale + shift)`` for a per-channel affine
        map, e.g. a BatchNorm on running statistics applied to ``y``.

        The gate is folded into the affine map (``y * (scale * gate) +
        shift * gate``), so the norm, ECA and the add are one op whose
        backward (:class:`_ScaleShiftResidual`) costs what the norm's own
        backward does. Under :func:`graph_capture`: the affine map as a
        BatchNorm op, then :meth:`forward_pooled_residual`.

        Args:
            y (Tensor): The residual branch before the affine map, (N, C, H, W).
            identity (Tensor): The shortcut.
            scale, shift (Tensor): The affine map, (C,) each.
            pooled (Tensor): ``(y * scale + shift).mean((2, 3))``, (N, C).
            inplace (bool): Without gradients, ``y`` may be overwritten by the
                result (when not contiguous, e.g. channels_last).
        """
        if not self.fused:
            c = scale.numel()
            x = y * scale.view(1, c, 1, 1) + shift.view(1, c, 1, 1)
            gate = eca_gate_reference(x, self.conv.weight)
            if self.gate_sink is not None:
                self.gate_sink(self, gate)
            return identity + x * gate.expand_as(x)
        if graph_capture():
            z = F.batch_norm(
                y,
                torch.zeros_like(scale),
                torch.ones_like(scale),
                scale,
                shift,
                False,
                0.0,
                0.0,
            )
            return self.forward_pooled_residual(z, identity, pooled)
        gate = _gate(pooled, self.conv.weight)
        if self.gate_sink is not None:
            self.gate_sink(self, gate)
        c = gate.shape[1]
        gate_scale = (scale.view(1, c, 1, 1) * gate).to(y.dtype)
        gate_shift = (shift.view(1, c, 1, 1) * gate).to(y.dtype)
        if torch.is_grad_enabled() and any(
            t.requires_grad for t in (y, identity, gate_scale, gate_shift)
        ):
            return _ScaleShiftResidual.apply(
                y, identity, gate_scale, gate_shift
            )
        return _scale_shift(y, gate_scale, gate_shift, inplace=inplace).add_(
            identity
        )

    def forward_pooled_residual(
        self, x: Tensor, identity: Tensor, pooled: Tensor
    ) -> Tensor:
        """``identity + x * gate`` with the gate of ``pooled``
        (``x.mean((2, 3))``, computed by the caller, e.g. from a cheaper
        tensor), in plain tensor ops: the form for graph capture."""
        gate = _plain_gate(pooled, self.conv.weight, x.dtype)
        if self.gate_sink is not None:
            self.gate_sink(self, gate)
        return _add_scaled(identity, x, gate)

    def extra_repr(self) -> str:
        return f'k_size={self.k_size}, fused={self.fused}'


def graph_capture() -> bool:
    """Whether the model is being captured as a graph: ``torch.jit.trace``,
    ONNX export (either exporter), ``torch.compile`` or ``torch.export``.

    Then the fused ECA runs as plain tensor ops: custom autograd Functions
    and ``aten::_unsafe_view`` do not export, and sizes read as Python ints
    would be frozen into a trace. The plain form costs no more than the
    paper's (``x * gate + identity``) and pools a quarter of the channels
    where norm3 is a frozen BatchNorm. (The TorchScript-based ONNX exporter
    traces; the dynamo-based one runs ``torch.export``, which counts as
    compiling. ``torch.onnx.is_in_onnx_export`` costs 10x more per call.)
    """
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def _plain_gate(
    pooled: Tensor, weight: Tensor, dtype: Optional[torch.dtype] = None
) -> Tensor:
    """:func:`_gate` without sizes taken as Python ints (for tracing and
    export): (N, C) -> (N, C, 1, 1), in ``dtype`` if given."""
    k = weight.shape[-1]
    y = F.conv1d(pooled.unsqueeze(1), weight, padding=k // 2)
    gate = torch.sigmoid(y).squeeze(1).unsqueeze(-1).unsqueeze(-1)
    return gate if dtype in (None, gate.dtype) else gate.to(dtype)


def _add_scaled(identity: Tensor, x: Tensor, gate: Tensor) -> Tensor:
    """``identity + x * gate`` for a captured graph: one ``addcmul``, but
    ``Mul`` and ``Add`` in ONNX (whose ``addcmul`` adds a ``Mul`` by 1)."""
    if not torch.compiler.is_compiling() and torch.onnx.is_in_onnx_export():
        return identity + x * gate
    return torch.addcmul(identity, x, gate)


def _gate(pooled: Tensor, weight: Tensor) -> Tensor:
    """sigmoid(conv1d across channels) of the pooled (N, C) vector, shaped
    (N, C, 1, 1); the (N, 1, C) view needs no transpose."""
    n, c = pooled.shape
    k = weight.shape[-1]
    y = F.conv1d(pooled.view(n, 1, c), weight, padding=k // 2)
    return torch.sigmoid(y).view(n, c, 1, 1)


class _ECAResidual(torch.autograd.Function):
    """``identity + x * gate`` with ``gate = _gate(x.mean((2, 3)), weight)``,
    with a backward of two passes over the block-sized tensors.

    Autograd's own graph for the same expression saves ``x`` twice and
    materialises ``g * x`` (for the gate), ``g * gate`` and the pooled
    gradient broadcast, then adds the two gradients of ``x``. Here: the
    gate's gradient is a dot product per channel (``g`` and ``x`` read once,
    nothing written), and ``x``'s gradient ``g * gate + dpooled / HW`` is
    written in one pass. The gate itself (a few hundred numbers) is
    differentiated by autograd in ``backward``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, identity: Tensor, weight: Tensor) -> Tensor:
        pooled = x.mean((2, 3))
        gate = _gate(pooled, weight)
        ctx.save_for_backward(x, pooled, weight, gate)
        return torch.addcmul(identity, x, gate)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, pooled, weight, gate = ctx.saved_tensors
        n, c, h, w = x.shape
        need_x, need_identity, need_weight = ctx.needs_input_grad
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
                grads = list(
                    torch.autograd.grad(_gate(p, wt).view(n, c), inputs, dgate)
                )
            dpooled = grads.pop(0) if need_x else None
            grad_weight = (
                grads.pop(0).to(weight.dtype) if need_weight else None
            )
        if need_x:
            grad_x = torch.addcmul(
                dpooled.view(n, c, 1, 1) / (h * w), grad, gate
            )
        return grad_x, grad if need_identity else None, grad_weight


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


def eca_gate_reference(x: Tensor, weight: Tensor) -> Tensor:
    """The gate of :func:`eca_reference`, (N, C, 1, 1): pools with
    ``adaptive_avg_pool2d``, transposes to run the 1-D conv across channels
    and transposes back, then the sigmoid."""
    k = weight.shape[-1]
    y = F.adaptive_avg_pool2d(x, 1)  # N, C, 1, 1
    y = F.conv1d(y.squeeze(-1).transpose(-1, -2), weight, padding=k // 2)
    return torch.sigmoid(y.transpose(-1, -2).unsqueeze(-1))  # N, C, 1, 1


def eca_reference(x: Tensor, weight: Tensor) -> Tensor:
    """Straightforward ECA, as written in the paper, for comparisons:
    ``x`` scaled by :func:`eca_gate_reference`."""
    return x * eca_gate_reference(x, weight).expand_as(x)
