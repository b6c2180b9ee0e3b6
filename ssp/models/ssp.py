"""The SSP model, split along the three deployment graphs (ARCHITECTURE.md §4):

* :class:`TextEncoder`  input_ids, attention_mask -> words (B,L,C), sentence (B,C)
* :class:`ImageEncoder` image -> f1, f2, f4, f8, f16, spix (superpixel tokens), q (associations)
* :class:`MaskDecoder`  image features + words -> mask_logits (B,1,H,W), target_logit (B,)

:class:`SSP` composes them for training and evaluation. The deployment graphs (``graphs.py``) cut the
decoder's prompt-independent part (:meth:`MaskDecoder.frame_features`) into the image encoder graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..config import SSPConfig
from .attention import FOURIER_DIM, FusionLayer, fourier_coords, grid_coords, position_encoding
from .backbones import build_backbone
from .decoder import UpDecoder
from .ops import nearest_replicate, superpixel_aggregate, superpixel_propagate
from .superpixel import build_superpixel_net
from .text import build_text_encoder

__all__ = [
    "SSP",
    "WordContext",
    "TextEncoder",
    "ImageEncoder",
    "MaskDecoder",
    "Grounding",
    "SSPOutput",
    "IMAGE_FEATURES",
    "frame_feature_names",
    "build_model",
]

#: names of the :class:`ImageEncoder` outputs, in order (also :meth:`MaskDecoder.forward`'s first inputs)
IMAGE_FEATURES = ("f1", "f2", "f4", "f8", "f16", "spix", "q")


def _conv_bn(cin: int, cout: int, k: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, 1, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _dw_sep(c: int) -> nn.Sequential:
    """Depthwise 3x3 + pointwise conv (cheap smoothing at high resolution)."""
    return nn.Sequential(
        nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c),
        nn.ReLU(inplace=True),
    )


class WordContext(nn.Module):
    """Word-level relevance keys: each token's masked attention over projected words, scaled by a learned mix
    (initialised 0, so training starts from the sentence-only relevance)."""

    def __init__(self, c: int):
        super().__init__()
        self.proj = nn.Linear(c, c)
        self.mix = nn.Parameter(torch.zeros(()))

    def forward(self, tokens: torch.Tensor, words: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        w = self.proj(words)
        att = torch.matmul(tokens, w.transpose(1, 2)) * (tokens.shape[-1] ** -0.5)
        att = (att + (1.0 - attention_mask.to(att.dtype))[:, None, :] * -1e4).softmax(-1)
        return self.mix * torch.matmul(att, w)


class TextEncoder(nn.Module):
    """BERT-family encoder + projection to width C; the sentence is the masked mean of word states."""

    def __init__(self, cfg: SSPConfig):
        super().__init__()
        self.encoder = build_text_encoder(cfg.text_encoder, cfg.pretrained, cfg.text_config)
        self.word_proj = nn.Sequential(nn.Linear(self.encoder.width, cfg.dim), nn.LayerNorm(cfg.dim))
        self.sent_proj = nn.Sequential(nn.Linear(self.encoder.width, cfg.dim), nn.LayerNorm(cfg.dim))

    def project(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = attention_mask.to(hidden.dtype).unsqueeze(-1)
        sent = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.word_proj(hidden), self.sent_proj(sent)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.project(self.encoder(input_ids, attention_mask), attention_mask)


class ImageEncoder(nn.Module):
    """Language-free: backbone + FPN to width C, superpixel associations Q and superpixel tokens.

    With ``token_coords`` the superpixel features ``spix`` carry two more channels: the Q-weighted centroid (y, x) of
    each superpixel in normalised image coordinates (SuperpixelAggregate of the pixel coordinates, so both export
    flavours compute it with the same op)."""

    def __init__(self, cfg: SSPConfig):
        super().__init__()
        self.cell = cfg.cell
        self.eps = cfg.eps
        self.token_coords = cfg.token_coords
        if cfg.token_coords:
            s4 = cfg.input_size // 4
            self.register_buffer("coords4", grid_coords(s4, s4).T.reshape(1, 2, s4, s4), persistent=False)
        c = cfg.dim
        self.backbone = build_backbone(cfg.backbone, cfg.input_size, cfg.pretrained, cfg.backbone_config)
        c2, c4, c8, c16, c32 = self.backbone.channels
        self.lat32 = nn.Conv2d(c32, c, 1)
        self.lat16 = nn.Conv2d(c16, c, 1)
        self.lat8 = nn.Conv2d(c8, c, 1)
        c4o = cfg.decoder_channels[1]
        self.lat4 = nn.Conv2d(c4, c4o, 1)
        self.td4 = nn.Conv2d(c, c4o, 1)
        self.smooth4 = _dw_sep(c4o)
        self.smooth8 = _dw_sep(c)
        self.stem2 = _conv_bn(c2, cfg.decoder_channels[2], 1)
        self.stem1 = _conv_bn(3, cfg.decoder_channels[3], 3)
        self.spixel = build_superpixel_net(cfg.spixel_net, cfg.spixel_width)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b2, b4, b8, b16, b32 = self.backbone(image)
        l16 = self.lat16(b16) + nearest_replicate(self.lat32(b32), 2)
        l8 = self.lat8(b8) + nearest_replicate(l16, 2)
        l4 = self.lat4(b4) + nearest_replicate(self.td4(l8), 2)
        f4 = self.smooth4(l4)
        q = self.spixel(image)
        spix = superpixel_aggregate(f4, q, self.cell, self.eps)
        if self.token_coords:  # a batch of coordinate maps by broadcasting (no Expand): one per frame
            centroid = superpixel_aggregate(q[:, :2] * 0.0 + self.coords4, q, self.cell, self.eps)
            spix = torch.cat([spix, centroid], 1)
        return self.stem1(image), self.stem2(b2), f4, self.smooth8(l8), l16, spix, q


class MaskDecoder(nn.Module):
    """PWT + SWT (purified by language relevance) + EPT + RUS decoder + mask and target-exists heads.

    Split in two: :meth:`frame_features` is everything computed from image features alone (skip projections,
    gates on skips, superpixel token projection), run once per frame; :meth:`decode` is the per-expression
    part. ``frame_index (K,)`` says which frame each expression reads, so one decoder batch serves
    (frame, prompt) pairs of several frames; without it, frames are broadcast (one frame, K expressions) or
    paired (one frame per expression). The deployment graphs cut here: the image encoder graph also runs
    :meth:`frame_features`, the mask decoder graph runs :meth:`decode` (ARCHITECTURE.md §6).
    """

    def __init__(self, cfg: SSPConfig):
        super().__init__()
        c, g = cfg.dim, cfg.grid
        s16 = cfg.input_size // 16
        self.cell = cfg.cell
        self.register_buffer("pos_pix", position_encoding(cfg.pos_encoding, s16, s16, c), persistent=False)
        self.register_buffer("pos_sp", position_encoding(cfg.pos_encoding, g, g, c), persistent=False)
        self.sp_in = nn.Linear(cfg.decoder_channels[1], c)
        self.sp_channels = cfg.decoder_channels[1]
        self.token_coords = cfg.token_coords
        if cfg.token_coords:  # learned projections of coordinates into the token streams (values, not only q / k)
            self.sp_coord = nn.Linear(FOURIER_DIM, c)
            self.pix_coord = nn.Linear(FOURIER_DIM, c)
            self.register_buffer("pix_fourier", fourier_coords(grid_coords(s16, s16)), persistent=False)
        self.word_relevance = cfg.relevance == "words"
        if self.word_relevance:  # each token's relevance also against the words it attends to
            self.rel_w = WordContext(c)
        self.pwt = nn.ModuleList(FusionLayer(c, cfg.heads, cfg.ffn_ratio) for _ in range(cfg.pwt_layers))
        self.coarse = nn.Sequential(nn.LayerNorm(c), nn.Linear(c, 1))
        self.swt = nn.ModuleList(FusionLayer(c, cfg.heads, cfg.ffn_ratio) for _ in range(cfg.swt_layers))
        self.rel_z = nn.Sequential(nn.LayerNorm(c), nn.Linear(c, c))
        self.rel_s = nn.Linear(c, c)
        self.ept = nn.ModuleList(
            FusionLayer(c, cfg.heads, cfg.ffn_ratio, self_attn=False) for _ in range(cfg.ept_layers)
        )
        self.ept_norm = nn.LayerNorm(c)
        self.prior = nn.Linear(c, cfg.prior_channels)
        dc = cfg.decoder_channels
        skips = (c, dc[1] + 1 + cfg.prior_channels, dc[2], dc[3])
        self.decoder = UpDecoder(c, dc, skips, cfg.decoder, cfg.rus_form)
        self.exists = nn.Sequential(nn.Linear(2 * c, c), nn.GELU(), nn.Linear(c, 1))
        self.sent_gate = nn.Linear(c, c)
        self.prior_channels = cfg.prior_channels
        self.frame_names = frame_feature_names(cfg)

    # ---- the model as trained: image features -> masks (training, evaluation)
    def forward(
        self,
        f1: torch.Tensor,
        f2: torch.Tensor,
        f4: torch.Tensor,
        f8: torch.Tensor,
        f16: torch.Tensor,
        spix: torch.Tensor,
        q: torch.Tensor,
        words: torch.Tensor,
        attention_mask: torch.Tensor,
        sentence: torch.Tensor,
        frame_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        return self.forward_all(f1, f2, f4, f8, f16, spix, q, words, attention_mask, sentence, frame_index)[:2]

    def forward_all(
        self,
        f1: torch.Tensor,
        f2: torch.Tensor,
        f4: torch.Tensor,
        f8: torch.Tensor,
        f16: torch.Tensor,
        spix: torch.Tensor,
        q: torch.Tensor,
        words: torch.Tensor,
        attention_mask: torch.Tensor,
        sentence: torch.Tensor,
        frame_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Returns (mask_logits, target_logit, coarse_logits (B,1,h16,w16), relevance_logits (B,1,h,w))."""
        feats = self.frame_features(f1, f2, f4, f8, f16, spix, q)
        return self.decode(feats, words, attention_mask, sentence, frame_index)

    def ground(
        self,
        f1: torch.Tensor,
        f2: torch.Tensor,
        f4: torch.Tensor,
        f8: torch.Tensor,
        f16: torch.Tensor,
        spix: torch.Tensor,
        q: torch.Tensor,
        words: torch.Tensor,
        attention_mask: torch.Tensor,
        sentence: torch.Tensor,
        frame_index: torch.Tensor | None = None,
    ) -> Grounding:
        """PWT + SWT + EPT + target-exists head: everything before the upsampling decoder. Training runs
        this alone in its grounding phase (the stride-16 / superpixel losses need nothing more)."""
        feats = self._grounding_features(f16, spix, q)
        return self._ground(feats, words, attention_mask, sentence, frame_index)

    # ---- the split the deployment graphs use
    def frame_features(
        self,
        f1: torch.Tensor,
        f2: torch.Tensor,
        f4: torch.Tensor,
        f8: torch.Tensor,
        f16: torch.Tensor,
        spix: torch.Tensor,
        q: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Everything the decoder computes from image features alone, per frame, by name (:attr:`frame_names`):
        ``f16``, ``sp_tokens`` (F,N,C), ``q``, and per upsampling step at stride s ``gate{s}`` (the sigmoid
        gate; at stride 4 the logit of the frame channels of its skip) and ``skip{s}`` (skip projection)."""
        feats = self._grounding_features(f16, spix, q)
        blocks = self.decoder.blocks
        prompt_ch = (0, 1 + self.prior_channels, 0, 0)  # the stride-4 skip also carries the propagated prior
        for blk, skip, stride, pc in zip(blocks, (f8, f4, f2, f1), (8, 4, 2, 1), prompt_ch):
            gate, proj = blk.frame_terms(skip, pc)
            if gate is not None:
                feats[f"gate{stride}"] = gate
            feats[f"skip{stride}"] = proj
        assert tuple(feats) == self.frame_names
        return feats

    def decode(
        self,
        feats: Mapping[str, torch.Tensor],
        words: torch.Tensor,
        attention_mask: torch.Tensor,
        sentence: torch.Tensor,
        frame_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Per-expression part on :meth:`frame_features` of F frames: (mask, target, coarse, relevance)."""
        k = words.shape[0]
        g = self._ground(feats, words, attention_mask, sentence, frame_index)
        # one propagation carries the relevance logit (the structure-preserving mask prior), r and the
        # purified superpixel features to stride 4
        prop = superpixel_propagate(g.sp_map, g.q, self.cell)
        terms = []
        for blk, stride in zip(self.decoder.blocks, (8, 4, 2, 1)):
            gate = feats.get(f"gate{stride}")
            t = (
                None if gate is None else _per_prompt(gate, frame_index, k),
                _per_prompt(feats[f"skip{stride}"], frame_index, k),
            )
            terms.append(blk.prompt_terms(t, prop[:, 1:]) if stride == 4 else t)
        # the decoder refines the propagated superpixel prior: mask = decoder + replicate(prior logit)
        mask = self.decoder.run(g.x16, terms) + nearest_replicate(prop[:, :1], 4)
        return mask, g.target, g.coarse, g.relevance

    def _grounding_features(self, f16: torch.Tensor, spix: torch.Tensor, q: torch.Tensor) -> dict[str, torch.Tensor]:
        sp = spix.flatten(2).transpose(1, 2)
        if not self.token_coords:
            return {"f16": f16, "sp_tokens": self.sp_in(sp), "q": q}
        tokens = self.sp_in(sp[..., : self.sp_channels]) + self.sp_coord(fourier_coords(sp[..., self.sp_channels :]))
        return {"f16": f16, "sp_tokens": tokens, "q": q}

    def _ground(
        self,
        feats: Mapping[str, torch.Tensor],
        words: torch.Tensor,
        attention_mask: torch.Tensor,
        sentence: torch.Tensor,
        frame_index: torch.Tensor | None,
    ) -> Grounding:
        k = words.shape[0]
        f16, q = feats["f16"], feats["q"]
        c, h16, w16 = f16.shape[1], f16.shape[2], f16.shape[3]
        gh, gw = q.shape[-2] // self.cell, q.shape[-1] // self.cell
        # per-frame layout work first (batch F), then each expression's frame (batch K)
        pix = _per_prompt(f16.flatten(2).transpose(1, 2), frame_index, k)
        sp = _per_prompt(feats["sp_tokens"], frame_index, k)
        q = _per_prompt(q, frame_index, k)
        gate = torch.sigmoid(self.sent_gate(sentence))[:, None, :]
        # PWT: pixel-word perception at stride 16 -> P and the coarse "potential target" map
        p = pix * gate
        if self.token_coords:
            p = p + self.pix_coord(self.pix_fourier)
        for layer in self.pwt:
            p = layer(p, self.pos_pix, words, None, attention_mask)
        coarse = self.coarse(p).transpose(1, 2).reshape(k, 1, h16, w16)
        # SWT: superpixel-word perception, purified by language relevance r
        z = sp * gate
        for layer in self.swt:
            z = layer(z, self.pos_sp, words, None, attention_mask)
        zr = self.rel_z(z)
        key = self.rel_s(sentence)[:, None, :]
        if self.word_relevance:  # + the words each token matches best
            key = key + self.rel_w(zr, words, attention_mask)
        rel = (zr * key).sum(-1, keepdim=True) * (c**-0.5)
        r = torch.sigmoid(rel)
        zp = z * r
        # EPT: pixels attend to the purified superpixel knowledge; r propagated as a stride-4 prior
        for layer in self.ept:
            p = layer(p, self.pos_pix, zp, self.pos_sp, None)
        p = self.ept_norm(p)
        sp_map = torch.cat([rel, r, self.prior(zp)], dim=2).transpose(1, 2).reshape(k, -1, gh, gw)
        x16 = p.transpose(1, 2).reshape(k, c, h16, w16)
        att = coarse.flatten(2).softmax(-1)  # (B,1,N)
        pooled = torch.matmul(att, p)[:, 0]
        target = self.exists(torch.cat([pooled, sentence], dim=1))[:, 0]
        return Grounding(x16, sp_map, target, coarse, rel.transpose(1, 2).reshape(k, 1, gh, gw), q)


def frame_feature_names(cfg: SSPConfig) -> tuple[str, ...]:
    """Names of :meth:`MaskDecoder.frame_features` (the image encoder graph's outputs) for a config."""
    names = ["f16", "sp_tokens", "q"]
    for stride in (8, 4, 2, 1):
        # the grouped RUS computes its stride-4 gate from the prompt's complete skip projection
        gate = cfg.decoder == "rus" and not (stride == 4 and cfg.rus_form == "grouped")
        names += ([f"gate{stride}"] if gate else []) + [f"skip{stride}"]
    return tuple(names)


def _per_prompt(t: torch.Tensor, frame_index: torch.Tensor | None, k: int) -> torch.Tensor:
    """Per-frame tensor (F,...) -> the frame of each of K expressions (K,...)."""
    if frame_index is not None:
        return t.index_select(0, frame_index)
    if t.shape[0] == k:
        return t
    if t.shape[0] == 1:  # one image, K expressions: a broadcast view
        return t.expand(k, *t.shape[1:])
    raise ValueError(
        f"MaskDecoder: image features have batch {t.shape[0]}, expressions {k}: give one image for "
        "all expressions, one per expression, or frame_index (K,) with each expression's frame"
    )


@dataclass
class Grounding:
    """What :meth:`MaskDecoder.ground` hands to the upsampling decoder (per expression, batch K)."""

    x16: torch.Tensor  # (B,C,h16,w16) language-aware pixel features after EPT
    sp_map: torch.Tensor  # (B,2+prior,gh,gw): relevance logit, r, purified prior channels
    target: torch.Tensor  # (B,) target-exists logit
    coarse: torch.Tensor  # (B,1,h16,w16) PWT coarse logits
    relevance: torch.Tensor  # (B,1,gh,gw) superpixel relevance logits
    q: torch.Tensor  # (B,9,H/4,W/4) associations of each expression's frame


@dataclass
class SSPOutput:
    mask_logits: torch.Tensor  # (B,1,H,W)
    target_logit: torch.Tensor  # (B,)
    coarse_logits: torch.Tensor  # (B,1,H/16,W/16)
    relevance_logits: torch.Tensor  # (B,1,h,w)
    q: torch.Tensor  # (B,9,H/4,W/4)


class SSP(nn.Module):
    """Full model = TextEncoder + ImageEncoder + MaskDecoder."""

    def __init__(self, cfg: SSPConfig):
        super().__init__()
        self.cfg = cfg
        self.text = TextEncoder(cfg)
        self.image = ImageEncoder(cfg)
        self.decoder = MaskDecoder(cfg)

    def forward(
        self,
        image: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        text_hidden: torch.Tensor | None = None,
    ) -> SSPOutput:
        if text_hidden is None:
            words, sent = self.text(input_ids, attention_mask)
        else:  # precomputed (frozen) encoder states
            words, sent = self.text.project(text_hidden, attention_mask)
        feats = self.image(image)
        mask, target, coarse, rel = self.decoder.forward_all(*feats, words, attention_mask, sent)
        return SSPOutput(mask, target, coarse, rel, feats[-1])


def build_model(cfg: SSPConfig) -> SSP:
    """Build an SSP model for a config (pretrained parts loaded offline when ``cfg.pretrained``)."""
    return SSP(cfg)
