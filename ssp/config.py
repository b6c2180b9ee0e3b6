"""Model configurations (`ssp_lite`, `ssp_paper`) as plain dataclasses that round-trip through JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import SSPError

__all__ = ["SSPConfig", "CONFIGS", "V2", "get_config", "config_from_json"]


@dataclass
class SSPConfig:
    """Everything that fixes the architecture and the input contract of an SSP model."""

    name: str = "ssp_lite"
    backbone: str = "efficientnet_lite0"
    text_encoder: str = "minilm_l6"
    dim: int = 128  # model width C
    heads: int = 4
    ffn_ratio: int = 2
    pwt_layers: int = 2
    swt_layers: int = 2
    ept_layers: int = 1
    input_size: int = 320
    max_tokens: int = 20
    cell: int = 4  # superpixel grid cell, in stride-4 feature pixels (v2: 8, 100 superpixels at 320x320)
    spixel_width: int = 32
    decoder: str = "rus"  # "rus" | "bilinear"
    decoder_channels: tuple[int, ...] = (64, 32, 16, 8)  # at strides 8, 4, 2, 1
    prior_channels: int = 16  # purified superpixel channels propagated to stride 4
    mean: tuple[float, float, float] = (0.498, 0.498, 0.498)  # RGB, EfficientNet-Lite
    std: tuple[float, float, float] = (0.502, 0.502, 0.502)
    pretrained: bool = True  # load offline backbone / text weights where available
    freeze_text: bool = True
    eps: float = 1e-8
    # issue 18: pretrained weights (Hugging Face save_pretrained folder or .safetensors file) applied by the
    # trainer after the model is built, and architecture overrides of the HF SwinConfig / BertConfig
    backbone_weights: str | None = None
    text_weights: str | None = None
    backbone_config: dict[str, Any] = field(default_factory=dict)
    text_config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # issue 19 (model v2). The defaults are the v1 architecture (what a checkpoint's stored config JSON without
    # these keys was trained with); the named configs set the v2 values (V2 below).
    spixel_net: str = "dilated"  # "dilated": 5 convs at stride 4, RF ~50 px | "pyramid": strides 4/8/16, RF ~120 px
    rus_form: str = "dense"  # "dense": CR = conv1x1(x) -> C'*s^2, gate = conv3x3(raw skip) | "grouped": CR = grouped
    #   Conv2d(C', 4C', 1, groups=C'/2) on sr(x), gate = conv1x1(skip projection): ~4 multiply-adds per output value
    pos_encoding: str = "sine8"  # fixed query/key encodings: "sine8" (spans 8 rad) | "multiscale" (0.5 to 32 periods)
    token_coords: bool = False  # learned projections of coordinates added to the token streams (Q-weighted
    #   superpixel centroids for SWT, normalised cell centres for PWT)
    relevance: str = "sentence"  # superpixel relevance against "sentence" | "words" (+ word-attention context)

    def __post_init__(self) -> None:
        if self.decoder not in ("rus", "bilinear"):
            raise SSPError(f"config {self.name!r}: decoder must be 'rus' or 'bilinear', got {self.decoder!r}")
        for key, allowed in (
            ("spixel_net", ("dilated", "pyramid")),
            ("rus_form", ("dense", "grouped")),
            ("pos_encoding", ("sine8", "multiscale")),
            ("relevance", ("sentence", "words")),
        ):
            if getattr(self, key) not in allowed:
                raise SSPError(
                    f"config {self.name!r}: {key} must be one of {', '.join(map(repr, allowed))}, got "
                    f"{getattr(self, key)!r}"
                )
        if self.rus_form == "grouped" and any(c % 2 for c in self.decoder_channels):
            raise SSPError(
                f"config {self.name!r}: rus_form='grouped' needs even decoder_channels (groups = C'/2), "
                f"got {tuple(self.decoder_channels)}"
            )
        if self.input_size % 32:
            raise SSPError(f"config {self.name!r}: input_size must be divisible by 32, got {self.input_size}")
        if self.dim % self.heads or self.dim % 4:
            raise SSPError(f"config {self.name!r}: dim={self.dim} must be divisible by heads={self.heads} and by 4")
        if (self.input_size // 4) % self.cell:
            raise SSPError(f"config {self.name!r}: input_size/4 must be divisible by cell={self.cell}")
        self.decoder_channels = tuple(self.decoder_channels)
        self.mean = tuple(self.mean)  # type: ignore[assignment]
        self.std = tuple(self.std)  # type: ignore[assignment]

    @property
    def grid(self) -> int:
        """Superpixel grid side (cells per row)."""
        return self.input_size // 4 // self.cell

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def replace(self, **kw: Any) -> SSPConfig:
        return dataclasses.replace(self, **kw)


#: the v2 architecture (issue 19): 100 superpixels at 320x320 from a superpixel net whose receptive field covers a
#: cell's 3x3 neighbourhood, 4 SWT layers (100 tokens are cheap), readable coordinates, the equal-cost RUS
V2: dict[str, Any] = {
    "cell": 8,
    "swt_layers": 4,
    "spixel_net": "pyramid",
    "rus_form": "grouped",
    "pos_encoding": "multiscale",
    "token_coords": True,
}

CONFIGS: dict[str, SSPConfig] = {
    "ssp_lite": SSPConfig(**V2),
    "ssp_paper": SSPConfig(
        **V2,
        name="ssp_paper",
        backbone="swin_b",
        text_encoder="bert_base",
        dim=256,
        heads=8,
        pwt_layers=2,
        ept_layers=1,
        input_size=480,
        decoder_channels=(128, 96, 48, 24),
        prior_channels=32,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        pretrained=False,
    ),
}


def get_config(name: str, **overrides: Any) -> SSPConfig:
    """Return a copy of a named config, with overrides (e.g. ``decoder="bilinear"``)."""
    if name not in CONFIGS:
        raise SSPError(f"unknown config {name!r}; choose one of: {', '.join(sorted(CONFIGS))}")
    return CONFIGS[name].replace(**overrides)


def config_from_json(text: str) -> SSPConfig:
    """Rebuild a config from :meth:`SSPConfig.to_json` output (unknown keys are an error)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SSPError(f"config JSON is not valid JSON: {e}") from None
    known = {f.name for f in dataclasses.fields(SSPConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SSPError(f"config JSON has unknown keys {unknown}; was it written by a newer ssp-edge?")
    return SSPConfig(**data)
