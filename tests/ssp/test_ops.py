"""The three SSP custom ops (ARCHITECTURE.md §3b) against naive loops written from the contract, and the
RUS / bilinear decoder blocks against references assembled by hand from their own layers."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssp_edge.ssp.models.decoder import BilinearBlock, GroupedRUSBlock, RUSBlock, UpDecoder, folding
from ssp_edge.ssp.models.ops import (
    NEIGHBOURS,
    REFERENCE,
    conv_depth_to_space,
    grouped_conv_depth_to_space,
    is_overridden,
    nearest_replicate,
    replication_upsample,
    superpixel_aggregate,
    superpixel_propagate,
    use_implementations,
)

# --------------------------------------------------------------------------- references (from §3b)


def _offset(k: int) -> tuple[int, int]:
    """Neighbour index k = (dy + 1) * 3 + (dx + 1)  ->  (dy, dx)."""
    return k // 3 - 1, k % 3 - 1


def ref_aggregate(x: np.ndarray, q: np.ndarray, cell: int, eps: float = 1e-8) -> np.ndarray:
    b_, c_, h4, w4 = x.shape
    h, w = h4 // cell, w4 // cell
    num = np.zeros((b_, c_, h, w), np.float64)
    den = np.zeros((b_, h, w), np.float64)
    for b in range(b_):
        for y in range(h4):
            for xx in range(w4):
                ci, cj = y // cell, xx // cell
                for k in range(9):
                    dy, dx = _offset(k)
                    i, j = ci + dy, cj + dx
                    if 0 <= i < h and 0 <= j < w:
                        num[b, :, i, j] += q[b, k, y, xx] * x[b, :, y, xx]
                        den[b, i, j] += q[b, k, y, xx]
    return num / (den[:, None] + eps)


def ref_propagate(z: np.ndarray, q: np.ndarray, cell: int) -> np.ndarray:
    b_, c_, h, w = z.shape
    h4, w4 = q.shape[-2:]
    out = np.zeros((b_, c_, h4, w4), np.float64)
    for b in range(b_):
        for y in range(h4):
            for xx in range(w4):
                ci, cj = y // cell, xx // cell
                for k in range(9):
                    dy, dx = _offset(k)
                    i, j = ci + dy, cj + dx
                    if 0 <= i < h and 0 <= j < w:
                        out[b, :, y, xx] += q[b, k, y, xx] * z[b, :, i, j]
    return out


def ref_replication_upsample_loop(x: np.ndarray, g: np.ndarray, yy: np.ndarray, s: int) -> np.ndarray:
    b_, c_, h, w = x.shape
    out = np.zeros((b_, c_, h * s, w * s), np.float64)
    for b, c, y, xx in itertools.product(range(b_), range(c_), range(h * s), range(w * s)):
        out[b, c, y, xx] = (
            x[b, c, y // s, xx // s] * g[b, 0, y, xx] + yy[b, c * s * s + (y % s) * s + (xx % s), y // s, xx // s]
        )
    return out


def ref_replication_upsample_torch(x: torch.Tensor, g: torch.Tensor, y: torch.Tensor, s: int) -> torch.Tensor:
    rep = x.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)
    return rep * g + F.pixel_shuffle(y, s)


def _random_q(rng: np.random.Generator, b: int, h4: int, w4: int, sharp: float = 2.0) -> np.ndarray:
    logits = rng.normal(size=(b, 9, h4, w4)) * sharp
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


# --------------------------------------------------------------------------- SuperpixelAggregate / Propagate

GRIDS = [(1, 1), (2, 2), (3, 5), (5, 3), (1, 4)]


@pytest.mark.parametrize("cell", [1, 2, 4, 8])  # 8: the v2 superpixel grid
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("batch,channels", [(1, 1), (3, 3), (1, 8)])
def test_aggregate_matches_loop(cell, grid, batch, channels):
    rng = np.random.default_rng([cell, grid[0], grid[1], batch, channels])
    h4, w4 = grid[0] * cell, grid[1] * cell
    x = rng.normal(size=(batch, channels, h4, w4))
    q = _random_q(rng, batch, h4, w4)
    got = superpixel_aggregate(_t(x), _t(q), cell).numpy()
    assert got.shape == (batch, channels, grid[0], grid[1])
    np.testing.assert_allclose(got, ref_aggregate(x, q, cell), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", [1, 2, 4, 8])  # 8: the v2 superpixel grid
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("batch,channels", [(1, 1), (3, 3), (1, 8)])
def test_propagate_matches_loop(cell, grid, batch, channels):
    rng = np.random.default_rng([10 + cell, grid[0], grid[1], batch, channels])
    h4, w4 = grid[0] * cell, grid[1] * cell
    z = rng.normal(size=(batch, channels, grid[0], grid[1]))
    q = _random_q(rng, batch, h4, w4)
    got = superpixel_propagate(_t(z), _t(q), cell).numpy()
    assert got.shape == (batch, channels, h4, w4)
    np.testing.assert_allclose(got, ref_propagate(z, q, cell), rtol=1e-10, atol=1e-12)


def test_neighbour_order_is_the_contract():
    assert NEIGHBOURS == tuple(_offset(k) for k in range(9))
    assert NEIGHBOURS[4] == (0, 0) and NEIGHBOURS[0] == (-1, -1) and NEIGHBOURS[5] == (0, 1)


@pytest.mark.parametrize("k", range(9))
def test_aggregate_one_hot_direction_and_out_of_grid(k):
    """All mass on neighbour k: cell (i, j) averages exactly the pixels of cell (i - dy, j - dx); cells whose
    sender would be outside the grid get nothing (num = den = 0 -> Z = 0)."""
    cell, h, w = 2, 3, 4
    rng = np.random.default_rng(k)
    x = rng.normal(size=(1, 2, h * cell, w * cell))
    q = np.zeros((1, 9, h * cell, w * cell))
    q[:, k] = 1.0
    z = superpixel_aggregate(_t(x), _t(q), cell).numpy()
    dy, dx = _offset(k)
    for i, j in itertools.product(range(h), range(w)):
        si, sj = i - dy, j - dx
        if 0 <= si < h and 0 <= sj < w:
            block = x[0, :, si * cell : (si + 1) * cell, sj * cell : (sj + 1) * cell]
            # den = cell * cell, so eps = 1e-8 perturbs the mean by ~2.5e-9 relative
            np.testing.assert_allclose(z[0, :, i, j], block.mean(axis=(1, 2)), rtol=1e-7, atol=1e-12)
        else:
            np.testing.assert_array_equal(z[0, :, i, j], 0.0)


@pytest.mark.parametrize("k", range(9))
def test_propagate_one_hot_direction_and_out_of_grid(k):
    cell, h, w = 2, 3, 4
    rng = np.random.default_rng(100 + k)
    z = rng.normal(size=(1, 3, h, w))
    q = np.zeros((1, 9, h * cell, w * cell))
    q[:, k] = 1.0
    out = superpixel_propagate(_t(z), _t(q), cell).numpy()
    dy, dx = _offset(k)
    for y, xx in itertools.product(range(h * cell), range(w * cell)):
        i, j = y // cell + dy, xx // cell + dx
        want = z[0, :, i, j] if (0 <= i < h and 0 <= j < w) else np.zeros(3)
        np.testing.assert_array_equal(out[0, :, y, xx], want)


def test_aggregate_eps_is_added_to_the_denominator():
    rng = np.random.default_rng(7)
    cell = 2
    x = rng.normal(size=(2, 3, 6, 10))
    q = _random_q(rng, 2, 6, 10)
    for eps in (0.0, 1e-8, 0.5, 3.0):
        got = superpixel_aggregate(_t(x), _t(q), cell, eps).numpy()
        np.testing.assert_allclose(got, ref_aggregate(x, q, cell, eps), rtol=1e-10, atol=1e-12)


def test_aggregate_of_a_constant_is_that_constant():
    """Z is a weighted mean: a constant feature map pools to the same constant in every cell (den > 0)."""
    rng = np.random.default_rng(3)
    q = _random_q(rng, 2, 12, 20)
    x = np.full((2, 4, 12, 20), 2.5)
    z = superpixel_aggregate(_t(x), _t(q), 4, eps=0.0).numpy()
    np.testing.assert_allclose(z, 2.5, rtol=1e-12)


def test_ops_float32_close_to_float64_reference():
    rng = np.random.default_rng(11)
    cell = 4
    x = rng.normal(size=(3, 8, 12, 20))
    q = _random_q(rng, 3, 12, 20)
    z32 = superpixel_aggregate(_t(x).float(), _t(q).float(), cell)
    assert z32.dtype == torch.float32
    np.testing.assert_allclose(z32.numpy(), ref_aggregate(x, q, cell), rtol=1e-4, atol=1e-5)
    zz = rng.normal(size=(3, 8, 3, 5))
    p32 = superpixel_propagate(_t(zz).float(), _t(q).float(), cell)
    np.testing.assert_allclose(p32.numpy(), ref_propagate(zz, q, cell), rtol=1e-4, atol=1e-5)


def test_superpixel_ops_gradcheck():
    rng = np.random.default_rng(5)
    cell = 2
    x = _t(rng.normal(size=(1, 2, 4, 6))).requires_grad_()
    q = _t(_random_q(rng, 1, 4, 6)).requires_grad_()
    z = _t(rng.normal(size=(1, 2, 2, 3))).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: superpixel_aggregate(a, b, cell), (x, q))
    assert torch.autograd.gradcheck(lambda a, b: superpixel_propagate(a, b, cell), (z, q))


def test_gradients_reach_q_through_pool_then_propagate():
    """The SpixelFCN reconstruction path (aggregate -> propagate) gives Q a non-zero gradient."""
    rng = np.random.default_rng(9)
    x = _t(rng.normal(size=(2, 3, 8, 8)))
    logits = torch.randn(2, 9, 8, 8, dtype=torch.float64, requires_grad=True)
    q = logits.softmax(1)
    rec = superpixel_propagate(superpixel_aggregate(x, q, 4), q, 4)
    ((rec - x) ** 2).mean().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


# --------------------------------------------------------------------------- ReplicationUpsample


@pytest.mark.parametrize("s", [2, 4, 8])
@pytest.mark.parametrize("b,c,h,w", [(1, 1, 1, 1), (2, 3, 2, 3), (1, 2, 3, 1)])
def test_replication_upsample_matches_references(s, b, c, h, w):
    rng = np.random.default_rng([s, b, c, h, w])
    x = rng.normal(size=(b, c, h, w))
    g = 1.0 / (1.0 + np.exp(-rng.normal(size=(b, 1, h * s, w * s))))
    y = rng.normal(size=(b, c * s * s, h, w))
    got = replication_upsample(_t(x), _t(g), _t(y), s)
    assert got.shape == (b, c, h * s, w * s)
    np.testing.assert_allclose(got.numpy(), ref_replication_upsample_loop(x, g, y, s), rtol=1e-12, atol=1e-12)
    ref = ref_replication_upsample_torch(_t(x), _t(g), _t(y), s)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("s", [1, 2, 3, 4])
def test_nearest_replicate_is_nearest_upsampling(s):
    x = torch.randn(2, 3, 3, 5, dtype=torch.float64)
    want = F.interpolate(x, scale_factor=s, mode="nearest")
    assert torch.equal(nearest_replicate(x, s), want)


def test_replication_upsample_gradcheck():
    s = 2
    x = torch.randn(1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    g = torch.rand(1, 1, 4, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randn(1, 2 * s * s, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: replication_upsample(a, b, c, s), (x, g, y))


# --------------------------------------------------------------------------- decoder blocks


def _randomize_bn(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


@pytest.mark.parametrize("fuse_k", [1, 3])
@pytest.mark.parametrize("scale", [2, 4])
def test_rus_block_equals_hand_built_reference(fuse_k, scale):
    torch.manual_seed(0)
    blk = RUSBlock(cin=6, cout=4, cskip=5, scale=scale, fuse_k=fuse_k).double()
    _randomize_bn(blk, 1)
    blk.eval()
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64)
    skip = torch.randn(2, 5, 3 * scale, 5 * scale, dtype=torch.float64)
    with torch.no_grad():
        got = blk(x, skip)
        sr = blk.sr(x)
        rep = sr.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
        gate = torch.sigmoid(blk.gate(skip))
        assert gate.shape == (2, 1, 3 * scale, 5 * scale)
        cr = F.pixel_shuffle(blk.cr(x), scale)
        conv, bn = blk.fuse[0], blk.fuse[1]
        h = rep * gate + cr + blk.skip(skip)
        h = F.conv2d(h, conv.weight, None, 1, fuse_k // 2)
        h = (h - bn.running_mean[None, :, None, None]) / torch.sqrt(bn.running_var[None, :, None, None] + bn.eps)
        want = torch.relu(h * bn.weight[None, :, None, None] + bn.bias[None, :, None, None])
    assert got.shape == (2, 4, 3 * scale, 5 * scale)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_rus_block_gradients_flow_to_every_parameter():
    torch.manual_seed(0)
    blk = RUSBlock(6, 4, 5)
    x = torch.randn(2, 6, 3, 5, requires_grad=True)
    skip = torch.randn(2, 5, 6, 10, requires_grad=True)
    blk(x, skip).square().mean().backward()
    for name, p in blk.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0 and skip.grad.abs().sum() > 0


def _eval_block_case(blk: torch.nn.Module, bn_seed: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A block (built under the caller's seed) in float64 eval mode with random BatchNorm statistics, an input at
    stride 2s and a skip at stride s (batch 2, 6 -> 4 channels, skip 5 channels)."""
    blk = blk.double()
    _randomize_bn(blk, bn_seed)
    blk.eval()
    return blk, torch.randn(2, 6, 3, 5, dtype=torch.float64), torch.randn(2, 5, 6, 10, dtype=torch.float64)


def test_bilinear_block_equals_hand_built_reference():
    torch.manual_seed(1)
    blk, x, skip = _eval_block_case(BilinearBlock(6, 4, 5, 2, 3), 2)
    with torch.no_grad():
        got = blk(x, skip)
        up = F.interpolate(blk.proj(x), size=(6, 10), mode="bilinear", align_corners=False)
        want = blk.fuse(up + blk.skip(skip))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kind,form,block",
    [("rus", "dense", RUSBlock), ("rus", "grouped", GroupedRUSBlock), ("bilinear", "dense", BilinearBlock)],
)
def test_up_decoder_goes_from_stride_16_to_stride_1(kind, form, block):
    torch.manual_seed(2)
    channels, skips = (16, 8, 8, 4), (12, 10, 6, 3)
    dec = UpDecoder(12, channels, skips, kind, form).eval()
    assert all(isinstance(b, block) for b in dec.blocks) and len(dec.blocks) == 4
    h16, w16 = 2, 3
    x = torch.randn(2, 12, h16, w16)
    sk = [torch.randn(2, c, h16 * 2 ** (i + 1), w16 * 2 ** (i + 1)) for i, c in enumerate(skips)]
    with torch.no_grad():
        out = dec(x, sk)
    assert out.shape == (2, 1, h16 * 16, w16 * 16)


# --------------------------------------------------------------------------- fast formulations == the plain ones


@pytest.mark.parametrize("cell", [1, 2, 4, 8])  # 8: the v2 superpixel grid
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
def test_propagate_as_one_matmul_equals_the_reference_formula(cell, grid):
    rng = np.random.default_rng([7, cell, *grid])
    z = rng.normal(size=(3, 5, *grid))
    q = _random_q(rng, 3, grid[0] * cell, grid[1] * cell)
    got = superpixel_propagate(_t(z), _t(q), cell)
    want = REFERENCE["superpixel_propagate"](_t(z), _t(q), cell)  # nine replicated terms (what plugins match)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("s", [2, 4, 8])
def test_nearest_replicate_equals_the_broadcast_formula_exactly(s):
    x = torch.randn(3, 4, 5, 2)
    want = x[:, :, :, None, :, None].expand(3, 4, 5, s, 2, s).reshape(3, 4, 5 * s, 2 * s)
    assert torch.equal(nearest_replicate(x, s), want)


@pytest.mark.parametrize("s", [2, 4])
def test_conv_depth_to_space_is_pixel_shuffle_of_the_1x1_conv(s):
    torch.manual_seed(s)
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64)
    w = torch.randn(4 * s * s, 6, 1, 1, dtype=torch.float64)
    torch.testing.assert_close(conv_depth_to_space(x, w, s), F.pixel_shuffle(F.conv2d(x, w), s), rtol=1e-12, atol=1e-12)


def test_is_overridden_only_inside_use_implementations():
    assert not is_overridden("replication_upsample")
    with use_implementations(replication_upsample=lambda x, g, y, s: x):
        assert is_overridden("replication_upsample") and not is_overridden("superpixel_propagate")
    assert not is_overridden("replication_upsample")


def _original_rus(blk: RUSBlock, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    s = blk.scale
    up = blk.sr(x).repeat_interleave(s, 2).repeat_interleave(s, 3) * torch.sigmoid(blk.gate(skip)) + F.pixel_shuffle(
        blk.cr(x), s
    )
    return blk.fuse(up + blk.skip(skip))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("fuse_k", [1, 3])
@pytest.mark.parametrize("cout", [4, 16])  # 16: the Conv (not MatMul) spatial-replication branch
def test_rus_block_split_in_frame_and_prompt_terms_equals_the_block_on_the_whole_skip(train, fuse_k, cout):
    """frame_terms on the frame channels of the skip + prompt_terms on the rest + step == the original formula
    on the concatenated skip (eval: with the 1x1 fusion folded; train: batch statistics), and so do gradients."""
    torch.manual_seed(fuse_k + cout)
    blk = RUSBlock(cin=6, cout=cout, cskip=7, scale=2, fuse_k=fuse_k).double()
    _randomize_bn(blk, 3)
    blk.train(train)
    x = torch.randn(3, 6, 3, 5, dtype=torch.float64, requires_grad=True)
    frame = torch.randn(1, 4, 6, 10, dtype=torch.float64)  # one frame, three prompts
    extra = torch.randn(3, 3, 6, 10, dtype=torch.float64)
    ref_blk = copy.deepcopy(blk)
    want = _original_rus(ref_blk, x, torch.cat([frame.expand(3, -1, -1, -1), extra], 1))
    gate, proj = blk.frame_terms(frame, prompt_channels=3)
    assert gate.shape == (1, 1, 6, 10) and proj.shape == (1, cout, 6, 10)  # per frame, not per prompt
    got = blk.step(x, *blk.prompt_terms((gate, proj), extra))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    got.square().sum().backward()
    want.square().sum().backward()
    for (name, p), (_, q) in zip(blk.named_parameters(), ref_blk.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-9, msg=name)


def test_rus_block_plugin_route_gets_the_same_terms():
    """With the op routed elsewhere (the converter's ssp:: node), the block hands it sr(x), the gate and the
    bias-free cr(x): the contract's inputs; the result equals the fast route."""
    torch.manual_seed(5)
    blk = RUSBlock(6, 4, 5, 2, 1).double().eval()
    _randomize_bn(blk, 4)
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64)
    skip = torch.randn(2, 5, 6, 10, dtype=torch.float64)
    seen = []

    def op(a, g, y, s):
        seen.append((a.shape, g.shape, y.shape))
        return REFERENCE["replication_upsample"](a, g, y, s)

    with torch.no_grad():
        fast = blk(x, skip)
        with use_implementations(replication_upsample=op):
            routed = blk(x, skip)
    assert seen == [((2, 4, 3, 5), (2, 1, 6, 10), (2, 16, 3, 5))]
    torch.testing.assert_close(routed, fast, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- the grouped (v2) RUS block


@pytest.mark.parametrize("s", [2, 4])
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_grouped_conv_depth_to_space_is_pixel_shuffle_of_the_grouped_1x1_conv(s, groups):
    torch.manual_seed(s * groups)
    x = torch.randn(2, 8, 3, 5, dtype=torch.float64)
    w = torch.randn(8 * s * s, 8 // groups, 1, 1, dtype=torch.float64)
    want = F.pixel_shuffle(F.conv2d(x, w, groups=groups), s)
    torch.testing.assert_close(grouped_conv_depth_to_space(x, w, groups, s), want, rtol=1e-12, atol=1e-12)


def test_grouped_channel_replication_keeps_each_channel_pair_in_its_group():
    """The grouped conv's output channel c*s*s + i (ReplicationUpsample's Y layout, pixel_shuffle's order) reads
    input channels 2*(c//2) and 2*(c//2)+1 only: perturbing one input pair changes exactly its two output channels."""
    torch.manual_seed(3)
    blk = GroupedRUSBlock(cin=12, cout=8, cskip=5).double().eval()
    assert blk.cr.groups == 4 and blk.cr.weight.shape == (32, 2, 1, 1)
    s = torch.randn(1, 8, 3, 4, dtype=torch.float64)
    base = F.pixel_shuffle(blk.cr(s), 2)
    for pair in range(4):
        t = s.clone()
        t[:, 2 * pair : 2 * pair + 2] += torch.randn(1, 2, 3, 4, dtype=torch.float64)
        diff = (F.pixel_shuffle(blk.cr(t), 2) - base).abs().flatten(2).amax(-1)[0]
        changed = sorted(int(c) for c in torch.nonzero(diff > 0))
        assert changed == [2 * pair, 2 * pair + 1]


@pytest.mark.parametrize("fuse_k", [1, 3])
@pytest.mark.parametrize("scale", [2, 4])
def test_grouped_rus_block_equals_hand_built_reference(fuse_k, scale):
    """gate = sigmoid(conv1x1(skip projection)), CR = pixel_shuffle(grouped conv(sr(x))), written out by hand."""
    torch.manual_seed(1)
    blk = GroupedRUSBlock(cin=6, cout=4, cskip=5, scale=scale, fuse_k=fuse_k).double()
    _randomize_bn(blk, 5)
    blk.eval()
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64)
    skip = torch.randn(2, 5, 3 * scale, 5 * scale, dtype=torch.float64)
    with torch.no_grad():
        got = blk(x, skip)
        sr = torch.einsum("oc,bchw->bohw", blk.sr.weight[:, :, 0, 0], x) + blk.sr.bias[None, :, None, None]
        proj = torch.einsum("oc,bchw->bohw", blk.skip.weight[:, :, 0, 0], skip) + blk.skip.bias[None, :, None, None]
        gate = torch.sigmoid(torch.einsum("c,bchw->bhw", blk.gate.weight[0, :, 0, 0], proj) + blk.gate.bias)[:, None]
        w = blk.cr.weight[:, :, 0, 0]  # (4 * s * s, 2)
        pair = [2 * (o // (2 * scale * scale)) for o in range(4 * scale * scale)]  # the group's first input
        y = torch.stack([w[o, 0] * sr[:, i] + w[o, 1] * sr[:, i + 1] for o, i in enumerate(pair)], 1)
        up = ref_replication_upsample_torch(sr, gate, y, scale)
        want = blk.fuse(up + proj)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_grouped_rus_costs_what_interpolation_costs():
    """Per output value beyond the shared projections: gate 1 + grouped conv 2 + replicate x gate + add 1
    multiply-adds = 4, bilinear interpolation's 4 (counted on the modules' weights)."""
    blk = GroupedRUSBlock(cin=32, cout=16, cskip=16, scale=2)
    cout, s = 16, 2
    gate_per_pixel = blk.gate.weight.numel()  # per high-res pixel
    cr_per_low_pixel = blk.cr.weight.numel()  # per low-res pixel
    per_output = (gate_per_pixel + cr_per_low_pixel / (s * s)) / cout + 1
    assert per_output == 4.0


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("fuse_k", [1, 3])
@pytest.mark.parametrize("cout", [4, 16])  # 16: the Conv (not MatMul) 1x1 branches
def test_grouped_rus_split_in_frame_and_prompt_terms_equals_the_block_on_the_whole_skip(train, fuse_k, cout):
    """The stride-4 case: frame channels per frame (no gate yet), prompt channels per prompt, then the gate from the
    whole projection == the block on the concatenated skip; gradients too."""
    torch.manual_seed(fuse_k + cout + 1)
    blk = GroupedRUSBlock(cin=6, cout=cout, cskip=7, scale=2, fuse_k=fuse_k).double()
    _randomize_bn(blk, 6)
    blk.train(train)
    x = torch.randn(3, 6, 3, 5, dtype=torch.float64, requires_grad=True)
    frame = torch.randn(1, 4, 6, 10, dtype=torch.float64)
    extra = torch.randn(3, 3, 6, 10, dtype=torch.float64)
    ref_blk = copy.deepcopy(blk)
    whole = torch.cat([frame.expand(3, -1, -1, -1), extra], 1)
    sr = ref_blk.sr(x)
    proj = ref_blk.skip(whole)
    want = ref_blk.fuse(ref_replication_upsample_torch(sr, torch.sigmoid(ref_blk.gate(proj)), ref_blk.cr(sr), 2) + proj)
    gate, fproj = blk.frame_terms(frame, prompt_channels=3)
    assert gate is None and fproj.shape == (1, cout, 6, 10)
    got = blk.step(x, *blk.prompt_terms((gate, fproj), extra))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    got.square().sum().backward()
    want.square().sum().backward()
    for (name, p), (_, q) in zip(blk.named_parameters(), ref_blk.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-9, msg=name)
    g2, _ = blk.frame_terms(frame)  # without prompt channels the gate is per frame
    assert g2.shape == (1, 1, 6, 10) and bool(((g2 > 0) & (g2 < 1)).all())


def test_grouped_rus_plugin_route_gets_the_contract_terms():
    """Routed to the ssp::ReplicationUpsample node the block hands it sr(x) (C'), the gate and the grouped conv's
    C'*s*s channels; the result equals the fast route (grouped ConvTranspose)."""
    torch.manual_seed(7)
    blk = GroupedRUSBlock(6, 4, 5, 2, 1).double().eval()
    _randomize_bn(blk, 7)
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64)
    skip = torch.randn(2, 5, 6, 10, dtype=torch.float64)
    seen = []

    def op(a, g, y, s):
        seen.append((a.shape, g.shape, y.shape))
        return REFERENCE["replication_upsample"](a, g, y, s)

    with torch.no_grad():
        fast = blk(x, skip)
        with use_implementations(replication_upsample=op):
            routed = blk(x, skip)
    assert seen == [((2, 4, 3, 5), (2, 1, 6, 10), (2, 16, 3, 5))]
    torch.testing.assert_close(routed, fast, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("block", [RUSBlock, GroupedRUSBlock])
def test_folding_off_runs_the_fusion_as_defined_with_the_same_result(block):
    """Eval mode folds a 1x1 fusion into the linear terms; ``folding(False)`` (FLOPs accounting) runs the fusion
    convolution as the architecture defines it: the fusion then sees the input, and the result is the same."""
    torch.manual_seed(11)
    blk, x, skip = _eval_block_case(block(6, 4, 5, 2, 1), 8)
    seen = []
    blk.fuse[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        folded = blk(x, skip)
        assert seen == []  # folded: the fusion conv does not run
        with folding(False):
            defined = blk(x, skip)
        assert seen == [(2, 4, 6, 10)]
        again = blk(x, skip)  # the scope ended: folded again
    assert len(seen) == 1
    torch.testing.assert_close(folded, defined, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(again, folded, rtol=0, atol=0)


def test_grouped_rus_needs_even_channels():
    with pytest.raises(ValueError, match="even"):
        GroupedRUSBlock(6, 5, 5)
