"""sdk.overlay: labels stay readable (outline aligned with the coloured text) and masks are tinted."""

from __future__ import annotations

import numpy as np
import pytest

from ssp_edge.sdk.overlay import COLOURS, draw
from ssp_edge.sdk.segmenter import Result


def _result(prompt: str, mask: np.ndarray, score: float) -> Result:
    return Result(prompt=prompt, mask=mask, prob=mask.astype(np.float32), score=score, exists=bool(mask.any()))


@pytest.mark.parametrize("prompt", ["the red circle", "the blue square that is far to the left"])
def test_label_outline_hugs_the_coloured_text(prompt):
    """Hershey glyph advances grow with stroke thickness: a thick black copy under the label drifts right
    of the coloured text and makes it unreadable. The outline must end within 2 px of the text."""
    frame = np.full((120, 400, 3), 128, np.uint8)
    out = draw(frame, [_result(prompt, np.zeros((120, 400), np.uint8), 0.03)])
    band = out[:40].astype(int)
    green = COLOURS[0]
    coloured = np.abs(band - np.array(green)).sum(-1) < 60
    dark = band.sum(-1) < 60
    assert coloured.any() and dark.any()
    cx, dx = np.nonzero(coloured.any(0))[0], np.nonzero(dark.any(0))[0]
    assert dx.min() >= cx.min() - 2 and dx.max() <= cx.max() + 2, (cx.min(), cx.max(), dx.min(), dx.max())


def test_mask_is_tinted_and_frame_is_not_modified():
    frame = np.full((64, 64, 3), 100, np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[30:50, 30:50] = 1
    out = draw(frame, [_result("the red circle", mask, 0.9)], fps=12.0)
    assert (frame == 100).all(), "draw must return a copy"
    inside = out[40, 40].astype(int)
    expected = (100 * 0.55 + np.array(COLOURS[0]) * 0.45).astype(int)
    assert np.abs(inside - expected).max() <= 1
    assert (out[60:64, 60:64] == 100).all()  # away from mask, contour and text
