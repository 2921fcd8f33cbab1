"""SupCon loss against hand-computed values (Khosla et al. 2020, L_out)."""

import math

import pytest
import torch

from dfkit.train.losses import ProjectionHead, SupConLoss, supcon_loss


def test_three_points_by_hand():
    # z1=(1,0), z2=(0,1), z3=(-1,0); labels 0,0,1; tau=1. Dots: z1.z2=0, z1.z3=-1, z2.z3=0.
    # anchor 1: positive {2}, denominator {2,3}: -log(e^0 / (e^0 + e^-1)) = log(1 + 1/e) = 0.313262
    # anchor 2: positive {1}, denominator {1,3}: -log(e^0 / (e^0 + e^0)) = log 2 = 0.693147
    # anchor 3: no positive -> left out.  mean = 0.503204
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    expected = (math.log(1 + 1 / math.e) + math.log(2)) / 2
    assert expected == pytest.approx(0.503204, abs=1e-6)
    assert supcon_loss(z, y, temperature=1.0).item() == pytest.approx(expected, abs=1e-6)
    # tau = 0.5 doubles the logits: anchor 1 -> log(1 + e^-2) = 0.126928; anchor 2 unchanged -> mean 0.410038
    assert supcon_loss(z, y, temperature=0.5).item() == pytest.approx(0.410038, abs=1e-6)
    # embeddings are L2-normalised first: scaling them changes nothing
    assert supcon_loss(z * torch.tensor([[3.0], [0.2], [7.0]]), y, temperature=1.0).item() == \
        pytest.approx(expected, abs=1e-6)


def test_two_positives_by_hand():
    # z=(1,0),(0,1),(1,0),(0,-1); labels 0,0,0,1; tau=1
    # anchor 1: P={2,3}, A={2,3,4}, logits 0,1,0 -> log-probs 0-log(2+e), 1-log(2+e) -> loss log(2+e) - 1/2 = 1.051445
    # anchor 2: P={1,3}, A={1,3,4}, logits 0,0,-1 -> both log-probs -log(2+1/e) -> loss log(2+1/e) = 0.861995
    # anchor 3: like anchor 1 -> 1.051445; anchor 4: no positive.  mean = 0.988295
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, -1.0]])
    y = torch.tensor([0, 0, 0, 1])
    a = math.log(2 + math.e) - 0.5
    b = math.log(2 + 1 / math.e)
    assert (2 * a + b) / 3 == pytest.approx(0.988295, abs=1e-6)
    assert supcon_loss(z, y, temperature=1.0).item() == pytest.approx((2 * a + b) / 3, abs=1e-6)


def test_views_gradients_and_edge_cases():
    torch.manual_seed(0)
    z = torch.randn(6, 2, 8, requires_grad=True)  # 6 samples x 2 views
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = SupConLoss(temperature=0.1)(z, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    # two views of one sample are positives of each other even when the label is unique in the batch
    single = torch.randn(3, 2, 4)
    assert supcon_loss(single, torch.tensor([0, 1, 2])).item() > 0
    # no anchor with a positive: zero, still differentiable
    e = torch.randn(3, 4, requires_grad=True)
    zero = supcon_loss(e, torch.tensor([0, 1, 2]))
    zero.backward()
    assert zero.item() == 0.0
    # well-separated classes give a lower loss than mixed ones
    sep = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
    assert supcon_loss(sep, torch.tensor([0, 0, 1, 1])) < supcon_loss(sep, torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError):
        supcon_loss(torch.randn(3, 4), torch.tensor([0, 1]))
    assert ProjectionHead(16, 8)(torch.randn(5, 16)).shape == (5, 8)
