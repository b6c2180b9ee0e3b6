"""Fixed-length WordPiece tokenization from a bundle's ``tokenizer.json`` (the ``tokenizers`` package,
no transformers, no torch): ids and attention mask padded / truncated to the model's max tokens."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BundleError, SDKError

__all__ = ["Tokens", "Tokenizer"]


@dataclass
class Tokens:
    input_ids: np.ndarray  # (N, L) int64
    attention_mask: np.ndarray  # (N, L) int64
    truncated: list[bool]  # per text: longer than L tokens (cut)


class Tokenizer:
    """``tokenizer(texts) -> Tokens``; warns once per text that had to be truncated."""

    def __init__(self, source: str | Path | bytes, max_tokens: int, vocab_size: int | None = None):
        """``source``: a ``tokenizer.json`` path, or its bytes (as :meth:`Bundle.read_bytes` returns them).
        ``vocab_size``: rows of the text graph's word embedding (the manifest's ``vocab_size``); a tokenizer that
        can produce an id at or above it is refused, so no out-of-range id ever reaches the graph."""
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 2 <= max_tokens <= 4096:
            raise SDKError(f"max_tokens must be an integer in [2, 4096] ([CLS] + words + [SEP]), got {max_tokens!r}")
        if vocab_size is not None and (
            isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2
        ):
            raise SDKError(f"vocab_size must be an integer >= 2 or None, got {vocab_size!r}")
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
        vocab = self._tok.get_vocab(with_added_tokens=True)
        self.max_id = max(vocab.values(), default=-1)
        self.vocab_size = vocab_size
        if vocab_size is not None and self.max_id >= vocab_size:
            raise BundleError(
                f"tokenizer file {where} produces token ids up to {self.max_id}, but the text graph's "
                f"vocabulary has {vocab_size} entries (ids 0..{vocab_size - 1}): the tokenizer does not "
                "belong to this text encoder; re-export the bundle with `ssp convert export`"
            )
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
        if self.vocab_size is not None and n and int(ids.max()) >= self.vocab_size:  # defence in depth
            raise BundleError(f"token id {int(ids.max())} is outside the text graph's vocabulary ({self.vocab_size})")
        return Tokens(ids, mask, cut)
