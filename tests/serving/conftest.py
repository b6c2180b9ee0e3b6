"""Serving tests: tests/serving on sys.path (triton_env, remote_client), shared frames."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def camera_frames(tmp_path_factory) -> np.ndarray:
    """20 RefShapes video frames cropped to 320x240 (so the letterbox pads and its inverse resizes), (N, H, W, 3)."""
    from ssp_edge.sdk.video import open_source
    from ssp_edge.ssp.data.refshapes import render_video

    video = tmp_path_factory.mktemp("video") / "v.mp4"
    render_video(str(video), frames=20)
    with open_source(str(video)) as src:
        frames = [f.image[40:280] for f in src]
    return np.ascontiguousarray(np.stack(frames))
