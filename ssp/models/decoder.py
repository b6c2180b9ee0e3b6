"""Upsampling decoders from stride 16 to stride 1: RUS (Replication Upsampling Strategy: spatial
replication gated by the skip feature + channel replication via depth-to-space) and a bilinear variant
for ablation / FLOPs comparison. Every step is x2 and fuses the skip feature of its stride.

Two RUS forms: :class:`RUSBlock` (v1, ``rus_form="dense"``: CR = conv1x1(x) to C'*s^2 channels, gate = 3x3 conv
on the raw skip; it costs more than interpolation) and :class:`GroupedRUSBlock` (v2, ``rus_form="grouped"``:
CR = grouped conv1x1 on sr(x), gate = conv1x1 on the skip projection; the multiply-adds of bilinear
interpolation at equal width).

Each block splits into what depends on the skip feature alone (:meth:`RUSBlock.frame_terms`: the gate and
the skip projection, run once per frame) and the per-expression step (:meth:`RUSBlock.step`), so K prompts
on one frame share the frame's work. A skip may also have channels that depend on the prompt (the
propagated superpixel prior at stride 4): the gate and skip convolutions are linear, so their frame part
and their prompt part (:meth:`RUSBlock.prompt_terms`) are computed apart and summed.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ops import (
    conv_depth_to_space,
    grouped_conv_depth_to_space,
    is_overridden,
    nearest_replicate,
    replication_upsample,
)

__all__ = ["RUSBlock", "GroupedRUSBlock", "BilinearBlock", "UpDecoder", "Terms", "folding"]

#: (gate or None, skip projection) of one block, per frame or per prompt
Terms = tuple[torch.Tensor | None, torch.Tensor]


def _fuse(c: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c, c, k, 1, k // 2, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))


def _one_channel_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 3x3 convolution to one channel as a depthwise 3x3 convolution and a sum over channels (same math):
    ONNX Runtime pads a one-channel output to its SIMD block (16 channels), the depthwise form does not."""
    c = x.shape[1]
    y = F.conv2d(x, weight.reshape(c, 1, *weight.shape[-2:]), padding=weight.shape[-1] // 2, groups=c).sum(1, True)
    return y if bias is None else y + bias.reshape(1, 1, 1, 1)


class RUSBlock(nn.Module):
    """SR (replicate x to s x s children, times gate a = sigmoid(conv(skip))) + CR (conv1x1 -> C*s^2,
    depth-to-space) + skip fusion. The first sum is the ``ssp::ReplicationUpsample`` op."""

    def __init__(self, cin: int, cout: int, cskip: int, scale: int = 2, fuse_k: int = 3):
        super().__init__()
        self.scale = scale
        self.sr = nn.Conv2d(cin, cout, 1)
        self.cr = nn.Conv2d(cin, cout * scale * scale, 1)
        self.gate = nn.Conv2d(cskip, 1, 3, 1, 1)
        self.skip = nn.Conv2d(cskip, cout, 1)
        self.fuse = _fuse(cout, fuse_k)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.step(x, *self.frame_terms(skip))

    def frame_terms(self, skip: torch.Tensor, prompt_channels: int = 0) -> Terms:
        """Gate and skip projection from the first channels of the skip (all but the last ``prompt_channels``).

        The channel-replication bias (a fixed s x s pattern after depth-to-space) is folded into the
        projection, and so is a folded 1x1 fusion (:meth:`_fold`). With ``prompt_channels`` the gate stays a
        logit until :meth:`prompt_terms` adds its part.
        """
        cf, s = skip.shape[1], self.scale
        gate = _one_channel_conv(skip, self.gate.weight[:, :cf], self.gate.bias)
        ws, bs = self.skip.weight[:, :cf].flatten(1), self.skip.bias
        crb = self.cr.bias.reshape(-1, s * s)  # (C, s*s): the bias of each depth-to-space child
        fold = self._fold()
        if fold is not None:
            w, b = fold
            ws, bs, crb = w @ ws, w @ bs + b, w @ crb
        tile = crb.reshape(1, -1, s, s).repeat(1, 1, skip.shape[-2] // s, skip.shape[-1] // s)
        proj = F.conv2d(skip, ws[:, :, None, None], bs) + tile
        return (gate if prompt_channels else torch.sigmoid(gate)), proj

    def prompt_terms(self, terms: Terms, extra: torch.Tensor) -> Terms:
        """Complete frame terms (gate logit, projection) with the prompt-dependent skip channels ``extra``."""
        gate, proj = terms
        cf = self.gate.in_channels - extra.shape[1]
        assert gate is not None
        gate = torch.sigmoid(gate + F.conv2d(extra, self.gate.weight[:, cf:], padding=self.gate.padding))
        ws = self.skip.weight[:, cf:].flatten(1)
        fold = self._fold()
        if fold is not None:
            ws = fold[0] @ ws
        return gate, proj + F.conv2d(extra, ws[:, :, None, None])

    def step(self, x: torch.Tensor, gate: torch.Tensor | None, proj: torch.Tensor) -> torch.Tensor:
        """The per-expression part: ``fuse(replicate(sr(x)) * gate + depth_to_space(cr(x)) + proj)``."""
        assert gate is not None
        s = self.scale
        wsr, bsr, wcr = self.sr.weight, self.sr.bias, self.cr.weight
        fold = self._fold()
        if fold is not None:  # the fusion's affine map moved into sr and cr: fuse(t) = relu(t) below
            w = fold[0]  # its bias b is in proj (frame_terms)
            wsr, bsr = (w @ wsr.flatten(1))[:, :, None, None], w @ bsr
            wcr = torch.einsum("oc,cpi->opi", w, wcr.reshape(w.shape[1], s * s, -1)).reshape(-1, wcr.shape[1], 1, 1)
        if wsr.shape[0] < 16:
            # few channels: a 1x1 conv as MatMul keeps ONNX Runtime from replicating in its blocked layout
            # (padded to 16 channels) and reordering the full-resolution result back (measured faster)
            k, c, h, w = x.shape
            sr = (torch.matmul(wsr.flatten(1), x.reshape(k, c, h * w)) + bsr[:, None]).reshape(k, -1, h, w)
        else:
            sr = F.conv2d(x, wsr, bsr)
        if is_overridden("replication_upsample"):  # the ssp::ReplicationUpsample node (bias is in proj)
            up = replication_upsample(sr, gate, F.conv2d(x, wcr), s)
        else:  # same math, every full-resolution tensor written once (Resize, ConvTranspose)
            up = nearest_replicate(sr, s) * gate + conv_depth_to_space(x, wcr, s)
        return torch.relu(up + proj) if fold is not None else self.fuse(up + proj)

    def _fold(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(W, b) of a 1x1 fusion in eval mode (:func:`_fold_fuse`), to fold into sr, cr and the skip projection."""
        return _fold_fuse(self.fuse, self.training)


_FOLDING: contextvars.ContextVar[bool] = contextvars.ContextVar("rus_folding", default=True)


@contextlib.contextmanager
def folding(enabled: bool) -> Iterator[None]:
    """Within the scope (this thread / context), the eval-mode folds of 1x1 fusions on (the default) or off: FLOPs
    accounting counts the layers as the architecture defines them, the same for every decoder."""
    token = _FOLDING.set(bool(enabled))
    try:
        yield
    finally:
        _FOLDING.reset(token)


def _fold_fuse(fuse: nn.Sequential, training: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A 1x1 fusion (conv + BatchNorm with running statistics, i.e. eval mode) is one affine map per pixel,
    ``fuse(t) = relu(W t + b)``: returns (W, b), which the RUS blocks fold into the linear terms before it (sr, cr
    and the skip projection), so no full-resolution convolution runs per expression; None in training mode or for
    a 3x3 fusion."""
    conv, bn = fuse[0], fuse[1]
    if training or not _FOLDING.get() or conv.kernel_size != (1, 1) or not bn.track_running_stats:
        return None
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = bn.bias - a * bn.running_mean
    if conv.bias is not None:
        b = b + a * conv.bias
    return a[:, None] * conv.weight.flatten(1), b


def _conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 convolution; with few output channels as a MatMul (keeps ONNX Runtime from replicating in its blocked
    layout, padded to 16 channels, and reordering the full-resolution result back)."""
    if weight.shape[0] >= 16:
        return F.conv2d(x, weight, bias)
    k, c, h, w = x.shape
    y = torch.matmul(weight.flatten(1), x.reshape(k, c, h * w))
    return (y if bias is None else y + bias[:, None]).reshape(k, -1, h, w)


class GroupedRUSBlock(nn.Module):
    """RUS at the cost of interpolation (v2): ``s = sr(x)``; SR = replicate(s) x gate with gate =
    sigmoid(conv1x1(skip projection) -> 1); CR = pixel_shuffle(grouped Conv2d(C', 4C', 1, groups=C'/2)(s));
    out = fuse(SR + CR + skip projection).

    Per output value (C' channels at s*h x s*w): the gate 1, the grouped conv 2 (8C' per low-res pixel), replicate x
    gate + add 1 multiply-adds: 4, what bilinear interpolation costs. The first sum is ``ssp::ReplicationUpsample``
    with Y = the grouped conv's output: its channel c*s*s + i comes from group c // 2 (pixel_shuffle's order).
    The gate is per frame where the skip is (strides 8, 2, 1); at stride 4 the skip also carries the prompt's
    propagated prior, and the gate is computed from the prompt's complete projection (:meth:`prompt_terms`).
    In eval mode a 1x1 fusion (strides 2 and 1) folds into the linear terms before it (:meth:`_folded`), as in
    :class:`RUSBlock`: no convolution then runs per expression at full resolution.
    """

    def __init__(self, cin: int, cout: int, cskip: int, scale: int = 2, fuse_k: int = 3):
        super().__init__()
        if cout % 2:
            raise ValueError(f"GroupedRUSBlock: output channels must be even (groups = C'/2), got {cout}")
        self.scale = scale
        self.groups = cout // 2
        self.sr = nn.Conv2d(cin, cout, 1)
        self.cr = nn.Conv2d(cout, cout * scale * scale, 1, groups=self.groups, bias=False)
        self.skip = nn.Conv2d(cskip, cout, 1)
        self.gate = nn.Conv2d(cout, 1, 1)
        self.fuse = _fuse(cout, fuse_k)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.step(x, *self.frame_terms(skip))

    def _gate(self, proj: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(_conv1x1(proj, self.gate.weight, self.gate.bias))

    def frame_terms(self, skip: torch.Tensor, prompt_channels: int = 0) -> Terms:
        """Skip projection of the first channels of the skip and, when the skip has no prompt channels, the gate.

        With a foldable 1x1 fusion ``relu(W t + b)`` (:meth:`_folded`) the projection comes out as ``W proj + b`` and
        both it and the gate are one convolution of the skip each (their weights multiplied out)."""
        cf = skip.shape[1]
        ws, bs = self.skip.weight[:, :cf].flatten(1), self.skip.bias
        folded = None if prompt_channels else self._folded()
        if folded is None:
            proj = F.conv2d(skip, ws[:, :, None, None], bs)
            return (None if prompt_channels else self._gate(proj)), proj
        w, b, _ = folded
        wg, bg = self.gate.weight.flatten(1), self.gate.bias
        gate = torch.sigmoid(_conv1x1(skip, (wg @ ws)[:, :, None, None], wg @ bs + bg))
        return gate, F.conv2d(skip, (w @ ws)[:, :, None, None], w @ bs + b)

    def prompt_terms(self, terms: Terms, extra: torch.Tensor) -> Terms:
        """Add the prompt-dependent skip channels ``extra`` to the projection; the gate from the sum (then the
        projection as ``W proj + b`` when the 1x1 fusion folds)."""
        cf = self.skip.in_channels - extra.shape[1]
        proj = terms[1] + F.conv2d(extra, self.skip.weight[:, cf:])
        gate, folded = self._gate(proj), self._folded()
        return gate, (proj if folded is None else F.conv2d(proj, folded[0][:, :, None, None], folded[1]))

    def _folded(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(W, b, D) of a foldable 1x1 fusion ``relu(W t + b)`` (eval mode), else None. W t = replicate(W sr(x)) *
        gate + pixel_shuffle(D sr(x)) + W proj with D[o*s*s + i] = sum_c W[o, c] cr[c*s*s + i] (W mixes the channels
        of each depth-to-space child; D is dense), so no convolution runs per expression at full resolution."""
        fold = _fold_fuse(self.fuse, self.training)
        if fold is None:
            return None
        w, b = fold
        cr = self.cr.weight.flatten(1)  # (C'*s*s, C'/groups): made dense, zeros outside each group
        dense = torch.block_diag(*cr.reshape(self.groups, -1, cr.shape[1]))
        d = torch.einsum("oc,cik->oik", w, dense.reshape(w.shape[1], self.scale**2, -1)).reshape(-1, w.shape[1])
        return w, b, d

    def step(self, x: torch.Tensor, gate: torch.Tensor | None, proj: torch.Tensor) -> torch.Tensor:
        """The per-expression part: ``fuse(replicate(sr(x)) * gate + pixel_shuffle(cr(sr(x))) + proj)``; with a
        folded 1x1 fusion ``relu(replicate(W sr(x)) * gate + pixel_shuffle(D sr(x)) + proj)``, ``proj`` then being
        the folded projection of :meth:`frame_terms` / :meth:`prompt_terms`."""
        assert gate is not None
        s = self.scale
        sr = _conv1x1(x, self.sr.weight, self.sr.bias)
        folded = self._folded()
        if folded is not None:
            w, _, d = folded
            wsr = _conv1x1(sr, w[:, :, None, None], None)
            if is_overridden("replication_upsample"):  # the ssp::ReplicationUpsample node, Y from the dense D
                up = replication_upsample(wsr, gate, F.conv2d(sr, d[:, :, None, None]), s)
            else:
                up = nearest_replicate(wsr, s) * gate + conv_depth_to_space(sr, d[:, :, None, None], s)
            return torch.relu(up + proj)
        if is_overridden("replication_upsample"):  # the ssp::ReplicationUpsample node
            up = replication_upsample(sr, gate, self.cr(sr), s)
        else:  # same math, every full-resolution tensor written once (Resize, grouped ConvTranspose)
            up = nearest_replicate(sr, s) * gate + grouped_conv_depth_to_space(sr, self.cr.weight, self.groups, s)
        return self.fuse(up + proj)


class BilinearBlock(nn.Module):
    """Interpolation baseline: bilinear x2 of conv1x1(x) + skip fusion."""

    def __init__(self, cin: int, cout: int, cskip: int, scale: int = 2, fuse_k: int = 3):
        super().__init__()
        self.scale = scale
        self.proj = nn.Conv2d(cin, cout, 1)
        self.skip = nn.Conv2d(cskip, cout, 1)
        self.fuse = _fuse(cout, fuse_k)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.step(x, *self.frame_terms(skip))

    def frame_terms(self, skip: torch.Tensor, prompt_channels: int = 0) -> Terms:
        """No gate; the skip projection of the first channels of the skip (see :meth:`RUSBlock.frame_terms`)."""
        return None, F.conv2d(skip, self.skip.weight[:, : skip.shape[1]], self.skip.bias)

    def prompt_terms(self, terms: Terms, extra: torch.Tensor) -> Terms:
        cf = self.skip.in_channels - extra.shape[1]
        return None, terms[1] + F.conv2d(extra, self.skip.weight[:, cf:])

    def step(self, x: torch.Tensor, gate: torch.Tensor | None, proj: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.proj(x), scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.fuse(up + proj)


class UpDecoder(nn.Module):
    """Four x2 steps (16 -> 8 -> 4 -> 2 -> 1) and a 1x1 mask head; 3x3 fusion at strides 8/4, 1x1 above."""

    def __init__(
        self, cin: int, channels: Sequence[int], skips: Sequence[int], kind: str = "rus", rus_form: str = "dense"
    ):
        super().__init__()
        block = BilinearBlock if kind != "rus" else RUSBlock if rus_form == "dense" else GroupedRUSBlock
        ks = (3, 3, 1, 1)
        self.blocks = nn.ModuleList()
        for i, (c, s) in enumerate(zip(channels, skips)):
            self.blocks.append(block(cin, c, s, 2, ks[i]))
            cin = c
        self.head = nn.Conv2d(cin, 1, 1)
        nn.init.constant_(self.head.bias, -2.0)  # start from "mostly background" (p ~ 0.12)

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        for blk, s in zip(self.blocks, skips):
            x = blk(x, s)
        return self.head(x)

    def run(self, x: torch.Tensor, terms: Sequence[Terms]) -> torch.Tensor:
        """The per-expression steps on already computed (gate, projection) terms of every block."""
        for blk, (g, p) in zip(self.blocks, terms):
            x = blk.step(x, g, p)
        # the one-channel head as a weighted sum over channels (ONNX Runtime pads a one-channel Conv to 16
        # channels in its blocked layout; measured faster than Conv or MatMul at full resolution)
        return (x * self.head.weight.reshape(1, -1, 1, 1)).sum(1, keepdim=True) + self.head.bias.reshape(1, 1, 1, 1)
