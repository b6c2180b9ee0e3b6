"""`ssp run`: segment a video / camera stream with one or more prompts and show or write the overlay."""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading

from .options import add_backend_args, add_bundle_trust_args, add_json_arg, add_native_code_args, backend_kwargs

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="segment a video or camera stream with prompts (ONNX Runtime or TensorRT)",
        description="Run a bundle on a video source and show or write the overlaid stream; ends with a summary "
        "(frames, FPS, median / p90 per stage; --json: as one JSON object). Type new prompts on stdin while "
        "it runs (separate several with ';').",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--bundle", required=True, help="bundle folder (ssp convert export)")
    p.add_argument(
        "--source",
        required=True,
        action="append",
        help="video file, image folder, camera index (0), v4l2:///dev/videoN, rtsp://..., csi://N, "
        "gst:PIPELINE; repeat for several cameras through one Segmenter (sdk/multi.py)",
    )
    p.add_argument("--prompt", action="append", required=True, help="what to segment (repeatable)")
    p.add_argument("--out", default="none", help="overlay sink: file.mp4, folder/, window, none")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument(
        "--policy",
        choices=("latest", "all"),
        default=None,
        help="frames to process: newest only (live default) or every frame (file default)",
    )
    p.add_argument("--mask-threshold", type=float, default=None, help="default: the bundle's tuned value")
    p.add_argument("--exists-threshold", type=float, default=None, help="default: the bundle's tuned value")
    p.add_argument("--save-frame", default=None, metavar="PNG", help="also save the last overlaid frame")
    p.add_argument("--no-stdin", action="store_true", help="do not read new prompts from stdin")
    p.add_argument(
        "--camera-workers",
        type=int,
        default=0,
        metavar="N",
        help="several --source on ONNX Runtime: threads that segment a round's frames at once, each run on "
        "cores / N threads (0: one per physical core, at most one per source; 1: one image-encoder batch per "
        "round, as on TensorRT)",
    )
    add_json_arg(p)
    add_backend_args(p)
    add_native_code_args(p)
    add_bundle_trust_args(p)
    p.set_defaults(func=_run)


def _stdin_reader(q: queue.Queue[list[str]]) -> None:
    from .pipeline import parse_prompts

    for line in sys.stdin:
        prompts = parse_prompts(line)
        if prompts:
            q.put(prompts)
            print(f"prompts -> {prompts}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from .errors import SDKError
    from .pipeline import parse_prompts, run_stream
    from .segmenter import Segmenter
    from .video import open_sink, open_source

    if len(args.source) > 1:  # several cameras: one Segmenter, one image-encoder batch per round
        from .multi import run_cli

        return run_cli(args)
    args.source = args.source[0]
    if args.max_frames is not None and args.max_frames < 1:
        raise SDKError(f"--max-frames must be at least 1, got {args.max_frames}")
    prompts = [p for item in args.prompt for p in parse_prompts(item)]
    sink = open_sink(args.out)  # bad --out fails before the model loads
    seg = Segmenter.open(
        args.bundle, mask_threshold=args.mask_threshold, exists_threshold=args.exists_threshold, **backend_kwargs(args)
    )
    from .backends.base import describe_backend, format_config

    config = describe_backend(seg.backend)
    if not args.json:
        print(f"backend: {format_config(config)}", file=sys.stderr)
    seg.set_prompts(prompts)
    source = open_source(args.source, policy=args.policy)
    sink.fps = source.fps
    q: queue.Queue[list[str]] = queue.Queue()
    if not args.no_stdin and sys.stdin is not None and sys.stdin.isatty():
        threading.Thread(target=_stdin_reader, args=(q,), daemon=True).start()
        print("type new prompts and press Enter (several: separate with ';')", file=sys.stderr)
    last = {}

    def keep(frame, results, shown) -> None:
        last["image"] = shown

    try:
        stats = run_stream(
            seg,
            source,
            sink,
            args.max_frames,
            q,
            keep if args.save_frame else None,
            progress=not args.json and not source.is_live,
        )
    finally:
        source.close()
        sink.close()
    if source.ended:  # a live source that went away: a clean end with the reason, not a crash
        print(f"ssp run: {source.ended}; stopped after {stats.frames} frames", file=sys.stderr)
    if stats.frames == 0:
        raise SDKError(f"source {args.source!r} delivered no frames")
    if args.save_frame and "image" in last:
        import cv2

        if not cv2.imwrite(args.save_frame, last["image"]):
            raise SDKError(f"--save-frame {args.save_frame!r}: cannot write this file (folder missing or not .png?)")
    summary = {
        "bundle": args.bundle,
        "source": args.source,
        "backend": seg.backend.name,
        "precisions": seg.backend.precisions,
        "config": config,
        "prompts": seg.prompts,
        **stats.summary(),
    }
    if args.out not in ("none", "window"):
        summary["out"] = args.out
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_config(config))
        print(stats.table())
        if "out" in summary:
            print(f"overlay written to {args.out}")
    return 0
