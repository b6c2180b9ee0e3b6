"""The superpixel nets (v1 dilated, v2 pyramid): output contract, receptive field measured by gradients, and the
superpixel quality measures (hard labels, boundary recall, achievable segmentation accuracy) on hand-made maps."""

from __future__ import annotations

import pytest
import torch

from ssp_edge.ssp.models.superpixel import (
    PyramidSuperpixelNet,
    SuperpixelNet,
    achievable_accuracy,
    boundary_recall,
    superpixel_labels,
)


@pytest.mark.parametrize("net_cls", [SuperpixelNet, PyramidSuperpixelNet])
def test_q_is_a_softmax_over_nine_neighbours_at_stride_4(net_cls):
    torch.manual_seed(0)
    net = net_cls(32).eval()
    q = net(torch.randn(2, 3, 128, 96))
    assert q.shape == (2, 9, 32, 24)
    torch.testing.assert_close(q.sum(1), torch.ones(2, 32, 24))
    assert (q >= 0).all()


def _receptive_field(net: torch.nn.Module, size: int = 256) -> int:
    """Width in image pixels of the input region that reaches the centre output pixel (nonzero gradient)."""
    torch.manual_seed(1)
    net = net.double().eval()
    logits = []
    net.head.register_forward_hook(lambda m, a, o: logits.append(o))  # before the softmax (no saturation)
    x = torch.randn(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    net(x)
    c = logits[0].shape[-1] // 2
    logits[0][0, :, c, c].sum().backward()
    cols = (x.grad.abs().sum((0, 1, 2)) > 0).nonzero()
    return int(cols.max() - cols.min() + 1)


def test_pyramid_net_sees_a_cell8_neighbourhood_and_the_v1_net_a_cell4_one():
    """A cell-8 superpixel spans 32 px; its 3x3 neighbourhood 96 px. The v1 net reaches ~50 px (cell 4's 48)."""
    v1 = _receptive_field(SuperpixelNet(16))
    v2 = _receptive_field(PyramidSuperpixelNet(16))
    assert 45 <= v1 < 96 <= v2
    assert v2 >= 2 * v1


def test_pyramid_net_costs_fewer_multiply_adds_than_the_v1_net():
    from torch.utils.flop_counter import FlopCounterMode

    def flops(net):
        with FlopCounterMode(display=False) as c, torch.no_grad():
            net.eval()(torch.zeros(1, 3, 320, 320))
        return c.get_total_flops()

    assert flops(PyramidSuperpixelNet(32)) < 0.5 * flops(SuperpixelNet(32))


def test_superpixel_labels_follow_the_argmax_neighbour():
    q = torch.zeros(1, 9, 8, 8)
    q[:, 4] = 1  # every pixel in its own cell
    lab = superpixel_labels(q, 4)
    want = torch.tensor([[0] * 4 + [1] * 4] * 4 + [[2] * 4 + [3] * 4] * 4)
    assert torch.equal(lab[0], want)
    q2 = torch.zeros(1, 9, 8, 8)
    q2[:, 5] = 1  # neighbour (dy, dx) = (0, +1): every pixel to the cell on its right, clamped at the border
    assert torch.equal(superpixel_labels(q2, 4)[0], torch.tensor([[1] * 8] * 4 + [[3] * 8] * 4))


def test_boundary_recall_and_achievable_accuracy_on_hand_made_maps():
    gt = torch.zeros(1, 16, 16, dtype=torch.long)
    gt[:, :, 8:] = 1  # one vertical boundary between columns 7 and 8
    aligned = gt.clone()
    shifted = torch.zeros_like(gt)
    shifted[:, :, 11:] = 1  # 3 px off
    assert boundary_recall(aligned, gt, 0) == 1.0
    assert boundary_recall(shifted, gt, 2) == 0.0 and boundary_recall(shifted, gt, 3) == 1.0
    assert achievable_accuracy(aligned, gt) == 1.0
    # superpixel 0 covers columns 0-10: 8 of its 11 columns are gt 0 -> 3 columns x 16 rows wrong
    assert achievable_accuracy(shifted, gt) == pytest.approx(1 - 3 * 16 / 256)
    one = torch.zeros_like(gt)
    assert achievable_accuracy(one, gt) == 0.5 and boundary_recall(one, gt, 2) == 0.0
