"""Serving and many-camera throughput, in frames/s:

* ``multi``: N cameras through one Segmenter (shared prompt cache), in batched rounds (one image-encoder batch per
  round) and with camera workers (``ssp run --source A --source B`` on ONNX Runtime: min(N, physical cores) threads,
  sessions opened with ``callers=`` that many), against N separate Segmenters, each in its own thread as N
  independent camera loops would run, and against N Segmenters taking turns in one thread. Settings are measured in
  interleaved rounds (A B C, B C A, ...) so a machine shared with other work slows them alike; medians are reported.
* ``serve``: ``ssp serve`` on 127.0.0.1 with N concurrent camera client processes (RemoteSegmenter over gRPC);
  total frames/s from the first client's start to the last one's end.

    python -m ssp_edge.benchmarks.serve_bench build/bundle --cameras 2 4 --frames 20 \\
        --serve-python build/serve-venv/bin/python --json

(``--serve-python``: an interpreter with ``ssp-edge[runtime,serve]``; PyTriton pins numpy<2, so it is usually its own
venv. Without it the serve part is skipped with the reason.)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["camera_frames", "bench_multi", "bench_serve", "main"]

PROMPTS = ["the red circle", "the blue square"]


def camera_frames(cameras: int, frames: int, size: tuple[int, int] = (320, 240)) -> list[np.ndarray]:
    """One rendered RefShapes clip per camera (different scenes), (frames, H, W, 3) uint8 BGR each."""
    from ssp_edge.sdk.video import open_source
    from ssp_edge.ssp.data.refshapes import render_video

    out = []
    with tempfile.TemporaryDirectory() as d:
        for c in range(cameras):
            path = os.path.join(d, f"cam{c}.mp4")
            render_video(path, seed=c, frames=frames, size=max(size))
            with open_source(path) as src:
                w, h = size
                out.append(np.stack([f.image[:h, :w] for f in src]))
    return out


def _timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_multi(bundle: str, cams: Sequence[np.ndarray], rounds: int = 3, threads: int = 0) -> dict[str, Any]:
    """Total frames/s of one Segmenter for all cameras (batched rounds; camera workers, what ``ssp run`` does on
    ONNX Runtime) vs one Segmenter per camera (threads / taking turns)."""
    from concurrent.futures import ThreadPoolExecutor

    from ssp_edge.sdk.backends.onnxruntime import physical_cores
    from ssp_edge.sdk.multi import segment_frames
    from ssp_edge.sdk.segmenter import Segmenter

    n, frames = len(cams), len(cams[0])
    workers = min(n, physical_cores())  # ssp run's default --camera-workers
    one = Segmenter.open(bundle, backend="onnxruntime", threads=threads)
    shared = Segmenter.open(bundle, backend="onnxruntime", threads=threads, callers=workers)
    pool = ThreadPoolExecutor(workers)
    separate = [Segmenter.open(bundle, backend="onnxruntime", threads=threads) for _ in range(n)]
    for s in separate:
        s.set_prompts(PROMPTS)

    def multi() -> None:
        for k in range(frames):
            segment_frames(one, [c[k] for c in cams], one.encode_prompts(PROMPTS))

    def multi_workers() -> None:
        for k in range(frames):
            segment_frames(shared, [c[k] for c in cams], shared.encode_prompts(PROMPTS), pool)

    def per_camera_threads() -> None:
        def loop(i: int) -> None:
            for f in cams[i]:
                separate[i].segment(f)

        ts = [threading.Thread(target=loop, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def per_camera_turns() -> None:
        for k in range(frames):
            for i in range(n):
                separate[i].segment(cams[i][k])

    settings = {
        "one_segmenter_batched": multi,
        "one_segmenter_workers": multi_workers,
        "separate_segmenters_threads": per_camera_threads,
        "separate_segmenters_turns": per_camera_turns,
    }
    segment_frames(one, [c[0] for c in cams], one.encode_prompts(PROMPTS))  # warm-up
    segment_frames(shared, [c[0] for c in cams], shared.encode_prompts(PROMPTS), pool)
    for i in range(n):
        separate[i].segment(cams[i][0])
    fps: dict[str, list[float]] = {k: [] for k in settings}
    names = list(settings)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # interleaved, rotating order
            fps[name].append(n * frames / _timed(settings[name]))
    pool.shutdown()
    precision = one.backend.precisions.get("image_encoder")  # the default precision (INT8 on a calibrated bundle)
    for s in (one, shared, *separate):
        s.close()
    med = {k: round(statistics.median(v), 2) for k, v in fps.items()}
    best_separate = max(med["separate_segmenters_threads"], med["separate_segmenters_turns"])
    return {
        "cameras": n,
        "frames_per_camera": frames,
        "rounds": rounds,
        "fps_median": med,
        "fps_rounds": {k: [round(x, 2) for x in v] for k, v in fps.items()},
        "camera_workers": workers,
        "precision": precision,
        # ssp run with several sources on ONNX Runtime: camera workers
        "speedup_vs_best_separate": round(med["one_segmenter_workers"] / best_separate, 3),
        "batched_vs_best_separate": round(med["one_segmenter_batched"] / best_separate, 3),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(url: str, frames_path: str, out: str) -> int:
    """One camera process: warm up, then segment every frame; writes its start / end times."""
    from ssp_edge.sdk.remote import RemoteSegmenter

    frames = np.load(frames_path)["frames"]
    seg = RemoteSegmenter.open(url, retry_for=120.0, timeout=120.0)
    seg.set_prompts(PROMPTS)
    seg.segment(frames[0])
    t0 = time.time()
    for f in frames:
        seg.segment(f)
    Path(out).write_text(json.dumps({"start": t0, "end": time.time(), "frames": len(frames)}))
    return 0


def bench_serve(
    bundle: str,
    cams: Sequence[np.ndarray],
    camera_counts: Sequence[int],
    serve_python: str,
    threads: int = 0,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """``ssp serve`` on loopback; for each N, N client processes at once: total frames/s."""
    ssp = Path(serve_python).parent / "ssp"
    ports = [_free_port() for _ in range(3)]
    tmp = Path(tempfile.mkdtemp(prefix="ssp-serve-bench-"))
    log = open(tmp / "serve.log", "wb")
    proc = subprocess.Popen(
        [
            str(ssp),
            "serve",
            bundle,
            "--backend",
            "onnxruntime",
            "--threads",
            str(threads),
            "--http-port",
            str(ports[0]),
            "--grpc-port",
            str(ports[1]),
            "--metrics-port",
            str(ports[2]),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"grpc://127.0.0.1:{ports[1]}"
    result: dict[str, Any] = {"url": url, "fps": {}}
    try:
        for i, c in enumerate(cams):
            np.savez(tmp / f"cam{i}.npz", frames=c)
        for n in camera_counts:
            procs = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "ssp_edge.benchmarks.serve_bench",
                        "--client",
                        url,
                        str(tmp / f"cam{i % len(cams)}.npz"),
                        str(tmp / f"n{n}_{i}.json"),
                    ],
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for i in range(n)
            ]
            for p in procs:
                _, err = p.communicate(timeout=timeout)
                if p.returncode != 0:
                    raise RuntimeError(f"serve bench client failed: {err[-2000:]}")
            runs = [json.loads((tmp / f"n{n}_{i}.json").read_text()) for i in range(n)]
            wall = max(r["end"] for r in runs) - min(r["start"] for r in runs)
            result["fps"][str(n)] = round(sum(r["frames"] for r in runs) / wall, 2)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
    lines = (tmp / "serve.log").read_text(errors="replace").splitlines()
    result["server_summary"] = next((ln for ln in reversed(lines) if "image-encoder batches" in ln), None)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    from ssp_edge.sdk.options import add_backend_args, add_json_arg

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--client"]:
        return _client(*argv[1:4])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--cameras", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--frames", type=int, default=20, help="frames per camera")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the multi-camera comparison")
    ap.add_argument("--serve-python", default=None, help="python of an environment with ssp-edge[serve]")
    ap.add_argument("--skip", choices=("multi", "serve"), action="append", default=[])
    add_backend_args(ap, which=("threads",))
    add_json_arg(ap)
    args = ap.parse_args(argv)
    if args.frames < 1 or args.rounds < 1 or min(args.cameras) < 1:
        ap.error("--frames, --rounds and --cameras must be at least 1")
    cams = camera_frames(max(args.cameras), args.frames)
    out: dict[str, Any] = {
        "bundle": args.bundle,
        "prompts": PROMPTS,
        "cpu_count": os.cpu_count(),
        "load_avg_1min_at_start": round(os.getloadavg()[0], 2),
    }
    if "multi" not in args.skip:
        out["multi"] = [bench_multi(args.bundle, cams[:n], args.rounds, args.threads) for n in args.cameras]
    if "serve" not in args.skip:
        if args.serve_python:
            out["serve"] = bench_serve(args.bundle, cams, args.cameras, args.serve_python, args.threads)
        else:
            out["serve"] = {"skipped": "no --serve-python (an environment with ssp-edge[serve])"}
    out["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(out))
        return 0
    for m in out.get("multi", []):
        print(
            f"{m['cameras']} cameras x {m['frames_per_camera']} frames: "
            + ", ".join(f"{k} {v} fps" for k, v in m["fps_median"].items())
            + f" (x{m['speedup_vs_best_separate']})"
        )
    s = out.get("serve", {})
    if "fps" in s:
        print("ssp serve: " + ", ".join(f"{k} cameras {v} fps" for k, v in s["fps"].items()))
    elif s:
        print(f"ssp serve: skipped ({s['skipped']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
