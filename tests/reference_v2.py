"""Test-only plain formulas of the v2 model (issue 19) on the parameters of the current modules: K copies of the image
features, the superpixel centroids from a loop-free but independent coordinate map, Fourier features written out,
the grouped RUS as replicate * gate + pixel_shuffle(grouped conv), the relevance with its word context. The
deployment split (frame_features / decode, folded terms, fast op formulations) is checked against these."""

from __future__ import annotations

import math

import original_ssp_model as orig
import torch
import torch.nn.functional as F


def fourier(yx: torch.Tensor) -> torch.Tensor:
    """(..., 2) -> [y, x, sin(pi 2^i y), sin(pi 2^i x) (i = 0..3), cos(...)]: the layout the Linear layers read."""
    bands = [yx * math.pi * (2**i) for i in range(4)]
    return torch.cat([yx] + [b.sin() for b in bands] + [b.cos() for b in bands], -1)


def centres(n: int) -> torch.Tensor:
    """Normalised (y, x) of an n x n grid's cell centres, row-major (n*n, 2)."""
    return torch.tensor([[(i + 0.5) / n, (j + 0.5) / n] for i in range(n) for j in range(n)])


def image_forward(enc, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
    f1, f2, f4, f8, f16, spix, q = orig.image_forward(enc, image)
    if not enc.token_coords:
        return f1, f2, f4, f8, f16, spix, q
    b, _, h4, w4 = q.shape
    yx = centres(h4).T.reshape(1, 2, h4, w4).repeat(b, 1, 1, 1)
    centroid = orig.superpixel_aggregate(yx, q, enc.cell, enc.eps)
    return f1, f2, f4, f8, f16, torch.cat([spix, centroid], 1), q


def _block(blk, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    if hasattr(blk, "groups"):  # GroupedRUSBlock
        s = blk.scale
        sr = blk.sr(x)
        proj = blk.skip(skip)
        up = orig.nearest_replicate(sr, s) * torch.sigmoid(blk.gate(proj)) + F.pixel_shuffle(blk.cr(sr), s)
        return blk.fuse(up + proj)
    return orig._block(blk, x, skip)


def decoder_forward_all(dec, f1, f2, f4, f8, f16, spix, q, words, attention_mask, sentence):
    """MaskDecoder.forward_all in plain formulas: (mask, target, coarse, relevance)."""
    k = words.shape[0]
    if f16.shape[0] == 1:
        f1, f2, f4, f8, f16, spix, q = (t.expand(k, -1, -1, -1) for t in (f1, f2, f4, f8, f16, spix, q))
    b, c, h16, w16 = f16.shape
    gh, gw = spix.shape[-2], spix.shape[-1]
    gate = torch.sigmoid(dec.sent_gate(sentence))[:, None, :]
    p = f16.flatten(2).transpose(1, 2) * gate
    sp = spix.flatten(2).transpose(1, 2)
    if dec.token_coords:
        p = p + dec.pix_coord(fourier(centres(h16)))
        z = dec.sp_in(sp[..., : dec.sp_channels]) + dec.sp_coord(fourier(sp[..., dec.sp_channels :]))
    else:
        z = dec.sp_in(sp)
    for layer in dec.pwt:
        p = layer(p, dec.pos_pix, words, None, attention_mask)
    coarse = dec.coarse(p).transpose(1, 2).reshape(b, 1, h16, w16)
    z = z * gate
    for layer in dec.swt:
        z = layer(z, dec.pos_sp, words, None, attention_mask)
    zr = dec.rel_z(z)
    key = dec.rel_s(sentence)[:, None, :].expand(-1, z.shape[1], -1)
    if dec.word_relevance:
        w = dec.rel_w.proj(words)
        logits = torch.einsum("bnc,blc->bnl", zr, w) / math.sqrt(c)
        logits = logits.masked_fill(attention_mask[:, None, :] == 0, -1e4)
        key = key + dec.rel_w.mix * torch.einsum("bnl,blc->bnc", logits.softmax(-1), w)
    rel = (zr * key).sum(-1, keepdim=True) / math.sqrt(c)
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
    prop = orig.superpixel_propagate(sp_map, q, dec.cell)
    x = x16
    for blk, skip in zip(dec.decoder.blocks, (f8, torch.cat([f4, prop[:, 1:]], 1), f2, f1)):
        x = _block(blk, x, skip)
    mask = dec.decoder.head(x) + orig.nearest_replicate(prop[:, :1], 4)
    return mask, target, coarse, rel.transpose(1, 2).reshape(b, 1, gh, gw)
