"""sdk.io_spec.check_feeds: every kind of mismatch between feeds and a graph's manifest specs is one SDKError
naming the graph and the tensor (as Polygraphy's check_inputs); matching feeds pass."""

from __future__ import annotations

import numpy as np
import pytest

from ssp_edge.sdk.bundle import GraphEntry, TensorSpec
from ssp_edge.sdk.errors import SDKError
from ssp_edge.sdk.io_spec import check_feeds

ENTRY = GraphEntry(
    "mask_decoder",
    "portable",
    "fp32",
    "mask_decoder.portable.onnx",
    [
        TensorSpec("f16", [1, 4, 5, 5], "float32"),
        TensorSpec("words", ["expressions", 3, 4], "float32"),
        TensorSpec("attention_mask", ["expressions", 3], "int64"),
        TensorSpec("extra_axis", ["batch_x", 2], "float32"),
    ],
    [TensorSpec("mask_logits", ["expressions", 1, 8, 8], "float32")],
)
AXES = {"expressions": [1, 4, 16]}


def _feeds(k: int = 2, **over):
    f = {
        "f16": np.zeros((1, 4, 5, 5), np.float32),
        "words": np.zeros((k, 3, 4), np.float32),
        "attention_mask": np.ones((k, 3), np.int64),
        "extra_axis": np.zeros((7, 2), np.float32),
    }
    f.update(over)
    return {k_: v for k_, v in f.items() if v is not None}


def test_matching_feeds_pass():
    check_feeds(ENTRY, _feeds(), AXES)
    check_feeds(ENTRY, _feeds(16), AXES)  # the range's maximum


class _Handle:
    """A device tensor stand-in: shape and dtype only (as the TensorRT backend's DeviceTensor)."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, np.dtype(dtype)


def test_device_handles_are_checked_by_shape_and_dtype():
    check_feeds(ENTRY, _feeds(f16=_Handle((1, 4, 5, 5), "float32")), AXES)
    with pytest.raises(SDKError, match="'f16' has dtype float16"):
        check_feeds(ENTRY, _feeds(f16=_Handle((1, 4, 5, 5), "float16")), AXES)


@pytest.mark.parametrize(
    "feeds, words",
    [
        (_feeds(words=None), ["missing 'words'", "it takes f16, words, attention_mask, extra_axis"]),
        ({**_feeds(), "sentence": np.zeros((2, 4), np.float32)}, ["unexpected 'sentence'"]),
        (_feeds(attention_mask=np.ones((2, 3), np.int32)), ["'attention_mask' has dtype int32, expected int64"]),
        (_feeds(words=np.zeros((2, 3), np.float32)), ["'words' has shape (2, 3) (rank 2), expected rank 3"]),
        (_feeds(f16=np.zeros((2, 4, 5, 5), np.float32)), ["'f16'", "axis 0 must be 1"]),
        (_feeds(f16=np.zeros((1, 4, 5, 6), np.float32)), ["'f16'", "axis 3 must be 5"]),
        (_feeds(17), ["'words' axis 0 (expressions) is 17", "1..16", "--max-prompts"]),
        (_feeds(0), ["'words' axis 0 (expressions) is 0"]),
        (
            _feeds(attention_mask=np.ones((3, 3), np.int64)),
            ["'attention_mask' axis 0 (expressions) is 3 but 'words'", "every input must agree"],
        ),
        (_feeds(extra_axis=np.zeros((0, 2), np.float32)), ["'extra_axis' axis 0 (batch_x) is 0", ">= 1"]),
    ],
)
def test_each_mismatch_names_the_tensor(feeds, words):
    with pytest.raises(SDKError) as e:
        check_feeds(ENTRY, feeds, AXES)
    msg = str(e.value)
    assert msg.startswith("mask_decoder (portable, fp32): ") and "\n" not in msg
    for w in words:
        assert w in msg, msg
