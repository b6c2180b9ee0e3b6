"""Fixed-length WordPiece tokenization from a bundle's ``tokenizer.json`` (the ``tokenizers`` package,
no transformers, no torch): ids and attention mask padded / truncated to the model's max tokens."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import SDKError

__all__ = ["Tokens", "Tokenizer"]


@dataclass
class Tokens:
    input_ids: np.ndarray  # (N, L) int64
    attention_mask: np.ndarray  # (N, L) int64
    truncated: list[bool]  # per text: longer than L tokens (cut)


class Tokenizer:
    """``tokenizer(texts) -> Tokens``; warns once per text that had to be truncated."""

    def __init__(self, source: str | Path | bytes, max_tokens: int):
        """``source``: a ``tokenizer.json`` path, or its bytes (as :meth:`Bundle.read_bytes` returns them)."""
        try:
            from tokenizers import Tokenizer as _Tok
        except ImportError:
            raise SDKError("the SDK needs the 'tokenizers' package: pip install 'ssp-edge[runtime]'") from None
        where = "tokenizer.json (bytes)" if isinstance(source, bytes) else repr(str(source))
        if not isinstance(source, bytes) and not Path(source).is_file():
            raise SDKError(f"tokenizer file {where} not found; re-export the bundle (ssp convert export)")
        try:
            text = source.decode("utf-8") if isinstance(source, bytes) else Path(source).read_text("utf-8")
            self._tok = _Tok.from_str(text)
        except Exception as e:  # tokenizers raises its own exception type for malformed files
            reason = " ".join(str(e).split())[:200]
            raise SDKError(f"tokenizer file {where} cannot be read ({reason}); re-export the bundle") from None
        self.max_tokens = int(max_tokens)
        self._tok.no_truncation()
        self._tok.no_padding()
        self._pad_id = self._tok.token_to_id("[PAD]") or 0
        self._sep_id = self._tok.token_to_id("[SEP]")

    def __call__(self, texts: Sequence[str], warn: bool = True) -> Tokens:
        if isinstance(texts, str):
            raise TypeError("Tokenizer takes a list of texts, not one string")
        n, L = len(texts), self.max_tokens
        ids = np.full((n, L), self._pad_id, np.int64)
        mask = np.zeros((n, L), np.int64)
        cut = []
        for i, enc in enumerate(self._tok.encode_batch(list(texts))):
            toks = list(enc.ids)
            long = len(toks) > L
            if long:  # keep [CLS] + the first L-2 word pieces + [SEP], as BERT tokenizers truncate
                toks = toks[: L - 1] + ([self._sep_id] if self._sep_id is not None else toks[L - 1 : L])
                if warn:
                    warnings.warn(f"prompt {texts[i]!r} is longer than {L} tokens: truncated", stacklevel=2)
            ids[i, : len(toks)] = toks
            mask[i, : len(toks)] = 1
            cut.append(long)
        return Tokens(ids, mask, cut)
