"""The attention explorer: recording ECA gates (fused = paper form = a gate
computed by hand from the conv weights), the analysis, the tool and the
training hook."""
import torch
import torch.nn.functional as F
import pytest

from eca_mmdet.models import (ECALayer, ECAResNet, NoEcaLayersError,
                              record_gates)


def _tiny_backbone(depth: int, fused: bool = True,
                   seed: int = 0) -> ECAResNet:
    """A small ECAResNet with random weights and BN statistics, in eval mode
    (a converted ImageNet model's state: frozen BN, the fused paths fold
    norm3 into the gate)."""
    torch.manual_seed(seed)
    model = ECAResNet(depth=depth, stem_channels=8, base_channels=8,
                      eca_k_size=None, eca_fused=fused, init_cfg=None)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
            assert m.weight.numel() == c
        if isinstance(m, ECALayer):
            m.conv.weight.data.normal_(0, 1.0)
    return model.eval()


def _hand_gates(model: ECAResNet, x: torch.Tensor) -> dict:
    """Each block's gate from its own weights, by the paper's formula
    ``sigmoid(conv1d(mean(branch)))``, the branch run module by module."""
    gates = {}

    def branch(block, inp):
        out = block.relu(block.norm1(block.conv1(inp)))
        if hasattr(block, 'conv3'):
            out = block.relu(block.norm2(block.conv2(out)))
            return block.norm3(block.conv3(out))
        return block.norm2(block.conv2(out))

    def pre_hook(name):
        def hook(block, args):
            w = block.eca.conv.weight
            pooled = branch(block, args[0]).mean((2, 3))      # N, C
            y = F.conv1d(pooled[:, None], w, padding=w.shape[-1] // 2)
            gates[name] = torch.sigmoid(y[:, 0])
        return hook

    handles = [m.register_forward_pre_hook(pre_hook(n))
               for n, m in model.named_modules() if hasattr(m, 'eca')]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return gates


@pytest.mark.parametrize('depth', [18, 50])
def test_recorded_gates_fused_paper_and_by_hand(depth):
    fused = _tiny_backbone(depth, fused=True)
    paper = _tiny_backbone(depth, fused=False)
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        with record_gates(fused) as rec_fused:
            out_fused = fused(x)
        with record_gates(paper) as rec_paper:
            paper(x)
        plain_out = fused(x)
    g_fused, g_paper = rec_fused.gates(), rec_paper.gates()
    hand = _hand_gates(paper, x)
    assert list(g_fused) == list(hand)
    assert len(hand) == {18: 8, 50: 16}[depth]
    assert list(g_fused)[0] == 'layer1.0'
    for name, ref in hand.items():
        assert g_fused[name].shape == ref.shape == (2, ref.shape[1])
        torch.testing.assert_close(g_paper[name], ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(g_fused[name], ref, rtol=0, atol=1e-6)
    # gates spread out (random conv weights): the comparison is not vacuous
    assert torch.cat([g.flatten() for g in hand.values()]).std() > 0.05
    # recording changed neither the result nor the layers afterwards
    for a, b in zip(out_fused, plain_out):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert all('gate_sink' not in m.__dict__ for m in fused.modules())


def test_recording_training_mode_and_plugin_forward():
    """Gradient path (custom autograd Function) and ECALayer.forward."""
    model = _tiny_backbone(18).train()
    x = torch.randn(2, 3, 32, 32)
    with record_gates(model) as rec:
        sum(o.sum() for o in model(x)).backward()
    hand = _hand_gates(model.eval(), x)
    for name, ref in hand.items():
        torch.testing.assert_close(rec.gates()[name], ref, rtol=0,
                                   atol=1e-6)
    eca = ECALayer(16, 3)
    with record_gates(torch.nn.Sequential(eca)) as rec:
        feats = torch.randn(3, 16, 5, 5)
        eca(feats)
    torch.testing.assert_close(rec.take()['0'], eca.gate(feats).flatten(1))
    assert rec.gates() == {}


def test_record_gates_without_eca_layers():
    with pytest.raises(NoEcaLayersError, match='no ECA layers'):
        with record_gates(torch.nn.Conv2d(3, 3, 1)):
            pass
