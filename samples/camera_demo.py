"""Live camera demo: a window with the overlay; type a new prompt in the terminal and press Enter
(several: separate with ';'). Headless machines write a video instead (--out demo.mp4).

    python samples/camera_demo.py --bundle build/bundle --source 0 --prompt "the red cup"
    python samples/camera_demo.py --bundle build/bundle --source build/demo_input.mp4 --out cam.mp4 --max-frames 30
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading

from ssp_edge.sdk.errors import SDKError
from ssp_edge.sdk.pipeline import parse_prompts, run_stream
from ssp_edge.sdk.segmenter import Segmenter
from ssp_edge.sdk.video import open_sink, open_source


def _keyboard(q: queue.Queue[list[str]]) -> None:
    for line in sys.stdin:
        if parse_prompts(line):
            q.put(parse_prompts(line))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--source", default="0", help="camera index, v4l2:///dev/videoN, csi://0, rtsp://..., a file")
    p.add_argument("--prompt", action="append", default=None)
    p.add_argument("--out", default="window", help="window, a .mp4 file, a folder/ or none")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "onnxruntime"))
    a = p.parse_args(argv)
    try:
        sink = open_sink(a.out)
        seg = Segmenter.open(a.bundle, backend=a.backend)
        seg.set_prompts(a.prompt or ["the red circle"])
        source = open_source(a.source)
        sink.fps = source.fps
        q: queue.Queue[list[str]] = queue.Queue()
        if sys.stdin is not None and sys.stdin.isatty():
            threading.Thread(target=_keyboard, args=(q,), daemon=True).start()
            print("type a prompt and press Enter; q in the window (or Ctrl-C) quits", file=sys.stderr)
        try:
            stats = run_stream(seg, source, sink, a.max_frames, q)
        finally:
            source.close()
            sink.close()
    except SDKError as e:
        print(f"camera_demo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(stats.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
