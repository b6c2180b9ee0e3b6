"""Test-only copy of the model's forward passes as trained (base commit aa1eed5, before the speed rework): the
image encoder's FPN with Expand replication, the mask decoder with K copies of the image features, RUS as
replicate * gate + pixel_shuffle, propagation as nine replicated terms. They run on the parameters of the
current modules (state_dict keys unchanged), so the refactored forward passes can be checked against them."""

from __future__ import annotations

import torch
import torch.nn.functional as F

NEIGHBOURS = tuple((k // 3 - 1, k % 3 - 1) for k in range(9))


def nearest_replicate(x: torch.Tensor, s: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, s, w, s).reshape(b, c, h * s, w * s)


def _cell_sum(x: torch.Tensor, cell: int) -> torch.Tensor:
    return F.avg_pool2d(x, cell, cell) * float(cell * cell)


def superpixel_aggregate(x: torch.Tensor, q: torch.Tensor, cell: int, eps: float = 1e-8) -> torch.Tensor:
    num = den = None
    for k, (dy, dx) in enumerate(NEIGHBOURS):
        qk = q[:, k : k + 1]
        pad = (1 + dx, 1 - dx, 1 + dy, 1 - dy)
        pn, pd = F.pad(_cell_sum(qk * x, cell), pad), F.pad(_cell_sum(qk, cell), pad)
        num = pn if num is None else num + pn
        den = pd if den is None else den + pd
    return num[:, :, 1:-1, 1:-1] / (den[:, :, 1:-1, 1:-1] + eps)


def superpixel_propagate(z: torch.Tensor, q: torch.Tensor, cell: int) -> torch.Tensor:
    h, w = z.shape[-2], z.shape[-1]
    zp = F.pad(z, (1, 1, 1, 1))
    out = None
    for k, (dy, dx) in enumerate(NEIGHBOURS):
        term = q[:, k : k + 1] * nearest_replicate(zp[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w], cell)
        out = term if out is None else out + term
    return out


def image_forward(enc, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """ImageEncoder.forward as trained."""
    b2, b4, b8, b16, b32 = enc.backbone(image)
    l16 = enc.lat16(b16) + nearest_replicate(enc.lat32(b32), 2)
    l8 = enc.lat8(b8) + nearest_replicate(l16, 2)
    l4 = enc.lat4(b4) + nearest_replicate(enc.td4(l8), 2)
    f4 = enc.smooth4(l4)
    q = enc.spixel(image)
    spix = superpixel_aggregate(f4, q, enc.cell, enc.eps)
    return enc.stem1(image), enc.stem2(b2), f4, enc.smooth8(l8), l16, spix, q


def _block(blk, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    if hasattr(blk, "gate"):  # RUSBlock
        s = blk.scale
        up = nearest_replicate(blk.sr(x), s) * torch.sigmoid(blk.gate(skip)) + F.pixel_shuffle(blk.cr(x), s)
        return blk.fuse(up + blk.skip(skip))
    up = F.interpolate(blk.proj(x), scale_factor=blk.scale, mode="bilinear", align_corners=False)
    return blk.fuse(up + blk.skip(skip))


def decoder_forward_all(dec, f1, f2, f4, f8, f16, spix, q, words, attention_mask, sentence):
    """MaskDecoder.forward_all as trained: (mask, target, coarse, relevance)."""
    k = words.shape[0]
    if f16.shape[0] == 1:
        f1, f2, f4, f8, f16, spix, q = (t.expand(k, -1, -1, -1) for t in (f1, f2, f4, f8, f16, spix, q))
    b, c, h16, w16 = f16.shape
    gh, gw = spix.shape[-2], spix.shape[-1]
    gate = torch.sigmoid(dec.sent_gate(sentence))[:, None, :]
    p = f16.flatten(2).transpose(1, 2) * gate
    for layer in dec.pwt:
        p = layer(p, dec.pos_pix, words, None, attention_mask)
    coarse = dec.coarse(p).transpose(1, 2).reshape(b, 1, h16, w16)
    z = dec.sp_in(spix.flatten(2).transpose(1, 2)) * gate
    for layer in dec.swt:
        z = layer(z, dec.pos_sp, words, None, attention_mask)
    rel = (dec.rel_z(z) * dec.rel_s(sentence)[:, None, :]).sum(-1, keepdim=True) * (c**-0.5)
    r = torch.sigmoid(rel)
    zp = z * r
    for layer in dec.ept:
        p = layer(p, dec.pos_pix, zp, dec.pos_sp, None)
    p = dec.ept_norm(p)
    sp_map = torch.cat([rel, r, dec.prior(zp)], dim=2).transpose(1, 2).reshape(b, -1, gh, gw)
    x16 = p.transpose(1, 2).reshape(b, c, h16, w16)
    att = coarse.flatten(2).softmax(-1)
    pooled = torch.matmul(att, p)[:, 0]
    target = dec.exists(torch.cat([pooled, sentence], dim=1))[:, 0]
    prop = superpixel_propagate(sp_map, q, dec.cell)
    x = x16
    for blk, skip in zip(dec.decoder.blocks, (f8, torch.cat([f4, prop[:, 1:]], 1), f2, f1)):
        x = _block(blk, x, skip)
    mask = dec.decoder.head(x) + nearest_replicate(prop[:, :1], 4)
    return mask, target, coarse, rel.transpose(1, 2).reshape(b, 1, gh, gw)
