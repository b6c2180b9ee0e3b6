"""Image + prompt(s) -> overlay PNG, with the SDK only (no torch).

python samples/image_demo.py --bundle build/bundle --image photo.jpg --prompt "the red cup" --out overlay.png
"""

from __future__ import annotations

import argparse
import json
import sys

import cv2

from ssp_edge.sdk.errors import SDKError
from ssp_edge.sdk.overlay import draw
from ssp_edge.sdk.segmenter import Segmenter


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--prompt", action="append", required=True)
    p.add_argument("--out", default="overlay.png")
    p.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "onnxruntime"))
    a = p.parse_args(argv)
    try:
        frame = cv2.imread(a.image, cv2.IMREAD_COLOR)
        if frame is None:
            raise SDKError(f"cannot read image {a.image!r} (missing, or not an image)")
        seg = Segmenter.open(a.bundle, backend=a.backend)
        results = seg.segment(frame, a.prompt)
        if not cv2.imwrite(a.out, draw(frame, results)):
            raise SDKError(f"cannot write {a.out!r}")
    except SDKError as e:
        print(f"image_demo: error: {e}", file=sys.stderr)
        return 2
    for r in results:
        ys, xs = r.mask.nonzero()
        box = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())] if len(xs) else None
        print(
            json.dumps(
                {"prompt": r.prompt, "exists": r.exists, "score": round(r.score, 3), "area": r.area, "box_xyxy": box}
            )
        )
    print(f"overlay written to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
