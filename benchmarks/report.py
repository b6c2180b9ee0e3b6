"""Markdown and PNG plots of a benchmark result (``bench.md``, ``bench_*.png``)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ssp_edge.sdk.fsio import atomic_write_bytes, atomic_write_text
from ssp_edge.sdk.segmenter import STAGES as _STAGES

__all__ = ["write_markdown", "write_plots"]


def _r(x: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def write_markdown(res: dict[str, Any], out_dir: Path) -> Path:
    L: list[str] = [f"# ssp bench: {res['config']} at {res['input_size']}x{res['input_size']}", "",
                    f"Bundle `{res['bundle']}`; {res['settings']['iters']} iterations after {res['settings']['warmup']} "
                    "warm-up frames, one prompt, all backends measured in one run on this machine "
                    f"({res['cpu']['cores']} CPU cores, {res['cpu']['isa']}); frame: {res.get('frame', '-')}.", "",
                    "## Ratios (measured in this run)", ""]
    ra = res["ratios"]
    L += [f"- ONNX Runtime FP32 / PyTorch eager (frame time): **{_r(ra['ort_fp32_over_pytorch'], '{:.3f}')}**",
          f"- ONNX Runtime INT8 / ONNX Runtime FP32 (frame time): **{_r(ra['ort_int8_over_ort_fp32'], '{:.3f}')}**"
          + ("" if ra["ort_int8_over_ort_fp32"] is not None else " (INT8 graphs not built: `ssp calibrate`)"),
          f"- cached / uncached text encoding (frame time): **{_r(ra['cached_over_uncached_text'], '{:.3f}')}**", "",
          "## Latency per stage (ms, median / p90)", "",
          "| backend | precision | status | " + " | ".join(_STAGES) + " | total | FPS | peak RSS MB | GFLOP/s |",
          "|---|---|---|" + "---|" * (len(_STAGES) + 4)]
    for r in res["rows"]:
        if r["status"] != "ok":
            L.append(f"| {r['backend']} | {r['precision']} | {r['reason']} |" + " |" * (len(_STAGES) + 4))
            continue
        cells = [f"{r['stages'][s]['median_ms']:.1f} / {r['stages'][s]['p90_ms']:.1f}" for s in (*_STAGES, "total")]
        L.append(f"| {r['backend']} | {r['precision']} | ok | " + " | ".join(cells) +
                 f" | {r['fps']:.2f} | {r['peak_rss_mb']:.0f} | {r['gflops_per_s']:.1f} |")
    L += ["", "## Throughput (prompts per frame)", ""]
    for name, sweep in res["throughput"].items():
        L += [f"{name}:", "", "| prompts | frame ms | frames/s | masks/s |", "|---|---|---|---|"]
        L += [f"| {x['prompts']} | {x['frame_ms']:.1f} | {x['frames_per_s']:.2f} | {x['masks_per_s']:.2f} |"
              for x in sweep]
        L.append("")
    tc = res["text_cache"]
    if tc:
        L += ["## Text cache", "", f"{tc['backend']}: {tc['cached_ms']:.1f} ms per frame with cached prompt encodings, "
                                   f"{tc['uncached_ms']:.1f} ms when every frame encodes its prompt (ratio {tc['ratio']:.3f}).", ""]
    cpu = res["cpu"]
    missing = res.get("not_measured") or {}
    L += ["## Achieved compute", ""]
    if res["frame_gflops"] is None:
        L += [f"Not measured: {missing.get('flops', 'FLOPs need PyTorch')}.", ""]
    else:
        L += [f"FLOPs per frame (image encoder + decoder, 1 prompt): {res['frame_gflops']:.2f} GFLOPs. CPU peak "
              f"(estimate: {cpu['cores']} cores x {cpu['ghz']:.2f} GHz x {cpu['flops_per_cycle']} FLOP/cycle, "
              f"{cpu['isa']}): {cpu['peak_gflops']:.0f} GFLOP/s.", ""]
    for r in res["rows"]:
        if r["status"] == "ok" and r.get("cpu_peak_share") is not None:
            L.append(f"- {r['backend']} {r['precision']}: {r['gflops_per_s']:.1f} GFLOP/s = "
                     f"{100 * r['cpu_peak_share']:.1f}% of peak")
    L += ["", "## Parameters and FLOPs per module (one frame + one prompt)", ""]
    if res["flops"] is None:
        L += [f"Not measured: {missing.get('flops', 'FLOPs need PyTorch')}."]
    else:
        L += ["| model | module | params (M) | GFLOPs |", "|---|---|---|---|"]
        for key in ("ssp_lite", "ssp_paper"):
            c = res["flops"][key]
            for part, v in c["parts"].items():
                L.append(f"| {key} ({c['input_size']}) | {part} | {v['parameters'] / 1e6:.3f} | "
                         f"{v['flops'] / 1e9:.3f} |")
            L.append(f"| {key} ({c['input_size']}) | **total** | {c['parameters'] / 1e6:.2f} | "
                     f"{c['flops'] / 1e9:.2f} |")
        rus, bil = res["flops"].get("bundle_rus", res["flops"]["bundle"]), res["flops"]["bundle_bilinear"]
        rd = rus["parts"].get("RUS_decoder", {})
        bd = bil["parts"].get("bilinear_decoder", {})
        if rd and bd:
            form = rus.get("rus_form", "")
            why = ("the grouped RUS (a 1x1 gate on the skip projection, a grouped channel-replication conv, "
                   "replicate x gate + add) costs the 4 multiply-adds per output value of interpolation"
                   if rd["flops"] <= bd["flops"] else
                   "in it, RUS's gate convolution on the raw skip feature and its C*s^2 channel-replication conv "
                   "cost more than one 1x1 projection plus bilinear interpolation")
            L += ["", f"RUS decoder vs bilinear decoder at {rus['input_size']}x{rus['input_size']}: "
                      f"{rd['flops'] / 1e9:.3f} vs {bd['flops'] / 1e9:.3f} GFLOPs "
                      f"({rd['parameters'] / 1e3:.0f}k vs {bd['parameters'] / 1e3:.0f}k parameters; bilinear "
                      "interpolation counted at 4 multiply-adds per output value). This compares two decoders of "
                      f"the same reconstructed model{f' ({form})' if form else ''}; {why}. The paper's fewer-FLOPs "
                      "claim is a different comparison: the whole SSP model against other referring-segmentation "
                      "methods, which this benchmark does not measure."]
            if rus.get("blocks") and bil.get("blocks"):
                L += ["", "| decoder block | RUS GFLOPs | bilinear GFLOPs | RUS params | bilinear params |",
                      "|---|---|---|---|---|"]
                for k, rb in rus["blocks"].items():
                    bb = bil["blocks"].get(k)
                    if bb is not None:
                        L.append(f"| {k} | {rb['flops'] / 1e9:.4f} | {bb['flops'] / 1e9:.4f} | {rb['parameters']:,} | "
                                 f"{bb['parameters']:,} |")
    je = res["jetson_estimates"]
    if je is not None:
        L += ["", f"## Estimated FPS on Jetson Orin (an ESTIMATE, not a measurement: {100 * je['utilization']:.0f}% "
                  "of the published peak; INT8 dense = sparse TOPS / 2, FP16 dense = sparse TOPS / 4)", "",
              "| device | published INT8 TOPS (sparse) | est. FPS FP16 | est. FPS INT8 |", "|---|---|---|---|"]
        L += [f"| {j['device']} | {j['int8_tops_sparse']:.0f} | {j['fps_fp16']:.0f} | {j['fps_int8']:.0f} |"
              for j in je["rows"]]
    if "plots" in missing:
        L += ["", f"Plots not drawn: {missing['plots']}."]
    path = out_dir / "bench.md"
    atomic_write_text(path, "\n".join(L) + "\n")
    return path


def _save_png(fig: Any, path: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())


def write_plots(res: dict[str, Any], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    ok = [r for r in res["rows"] if r["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(8, 4))
    left = [0.0] * len(ok)
    labels = [f"{r['backend']}\n{r['precision']}" for r in ok]
    for s in _STAGES:
        vals = [r["stages"][s]["median_ms"] for r in ok]
        ax.barh(labels, vals, left=left, label=s)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xlabel("median ms per frame (1 prompt)")
    ax.set_title("latency per stage")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(str(out_dir / "bench_latency.png"))
    _save_png(fig, paths[-1])
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, sweep in res["throughput"].items():
        ax.plot([x["prompts"] for x in sweep], [x["masks_per_s"] for x in sweep], marker="o", label=name)
    ax.set_xlabel("prompts per frame")
    ax.set_ylabel("masks per second")
    ax.set_title("throughput")
    ax.legend()
    fig.tight_layout()
    paths.append(str(out_dir / "bench_throughput.png"))
    _save_png(fig, paths[-1])
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("ssp_lite", "ssp_paper")):
        parts = res["flops"][key]["parts"]
        ax.barh(list(parts), [v["flops"] / 1e9 for v in parts.values()])
        ax.set_title(f"{key}: GFLOPs per module")
    fig.tight_layout()
    paths.append(str(out_dir / "bench_flops.png"))
    _save_png(fig, paths[-1])
    plt.close(fig)
    return paths
