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


def _targets(res: dict[str, Any]) -> list[str]:
    names = {
        "ort_fp32_over_pytorch": "ONNX Runtime FP32 / PyTorch eager frame time (1 prompt)",
        "fps_1_prompt": "ONNX Runtime FP32 frames/s, 1 prompt",
        "fps_2_prompts": "ONNX Runtime FP32 frames/s, 2 prompts",
        "prompts_8_over_1": "8-prompt frame time / 1-prompt frame time (ONNX Runtime FP32)",
        "cpu_peak_share": "ONNX Runtime FP32 share of the CPU's FP32 peak (1 prompt)",
        "ort_int8_over_ort_fp32": "ONNX Runtime INT8 / ONNX Runtime FP32 frame time (1 prompt)",
        "best_fps_2_prompts": "fastest CPU configuration, frames/s with 2 prompts",
    }
    out = ["| target | measured | bound | met |", "|---|---|---|---|"]
    for k, t in (res.get("targets") or {}).items():
        v = t["value"]
        shown = "-" if v is None else (f"{100 * v:.1f}%" if k == "cpu_peak_share" else f"{v:.3g}")
        met = "-" if t["met"] is None else ("yes" if t["met"] else "**no**")
        label = names.get(k, k) + (f" ({t['configuration']})" if t.get("configuration") else "")
        out.append(f"| {label} | {shown} | {t['target']} | {met} |")
    d = res.get("default")
    if d:
        fps = ", ".join(f"{v:.1f} with {p} prompt{'s' if int(p) > 1 else ''}" for p, v in d["frames_per_s"].items())
        out += ["", f"Default configuration (`Segmenter.open(bundle)` here): {d['configuration']} ({d['reason']})"]
        out[-1] += f"; frames/s: {fps}." if fps else " (not measured in this run)."
    return out


def write_markdown(res: dict[str, Any], out_dir: Path) -> Path:
    la = res.get("load_average") or {}
    L: list[str] = [
        f"# ssp bench: {res['config']} at {res['input_size']}x{res['input_size']}",
        "",
        f"Bundle `{res['bundle']}`; {res['cpu']['cores']} CPU cores ({res['cpu']['microarch']}, "
        f"{res['cpu']['isa']}); frame: {res.get('frame', '-')}.",
        "",
        f"Method: {res.get('method', '-')}. Load average (1, 5, 15 min) at the start "
        f"{la.get('start', '-')}, at the end {la.get('end', '-')}.",
        "",
        "## Ratios (measured in this run)",
        "",
    ]
    ra = res["ratios"]
    L += [
        f"- ONNX Runtime FP32 / PyTorch eager (frame time): **{_r(ra['ort_fp32_over_pytorch'], '{:.3f}')}**",
        f"- ONNX Runtime INT8 / ONNX Runtime FP32 (frame time): **{_r(ra['ort_int8_over_ort_fp32'], '{:.3f}')}**"
        + ("" if ra["ort_int8_over_ort_fp32"] is not None else " (INT8 graphs not built: `ssp calibrate`)"),
        f"- OpenVINO FP32 / ONNX Runtime FP32: **{_r(ra.get('openvino_fp32_over_ort_fp32'), '{:.3f}')}**, "
        f"OpenVINO bf16 / ONNX Runtime FP32: **{_r(ra.get('openvino_bf16_over_ort_fp32'), '{:.3f}')}**",
        f"- cached / uncached text encoding (frame time): **{_r(ra['cached_over_uncached_text'], '{:.3f}')}**",
        "",
    ]
    if res.get("targets"):
        L += ["## Targets", ""] + _targets(res) + [""]
    L += [
        "## Latency per stage (ms, median / p90, 1 prompt)",
        "",
        "| backend | precision | status | " + " | ".join(_STAGES) + " | total | FPS | peak RSS MB (+added) | GFLOP/s |",
        "|---|---|---|" + "---|" * (len(_STAGES) + 4),
    ]
    for r in res["rows"]:
        if r["status"] != "ok" or not r["stages"]:
            L.append(
                f"| {r['backend']} | {r['precision']} | {r['reason'] or r['status']} |" + " |" * (len(_STAGES) + 4)
            )
            continue
        cells = [
            f"{r['stages'][s]['median_ms']:.1f} / {r['stages'][s]['p90_ms']:.1f}" if s in r["stages"] else "-"
            for s in (*_STAGES, "total")
        ]
        L.append(
            f"| {r['backend']} | {r['precision']} | ok | "
            + " | ".join(cells)
            + f" | {r['fps']:.2f} | {r['peak_rss_mb']:.0f} (+{r.get('added_rss_mb', 0):.0f}) | "
            f"{r['gflops_per_s']:.1f} |"
        )
    L += ["", "What ran (backend, precision per graph, threads, options):", ""]
    for r in res["rows"]:
        c = r.get("config") or {}
        if r["status"] == "ok" and c:
            opts = "; ".join(f"{k}={v}" for k, v in (c.get("options") or {}).items())
            L.append(f"- {r['backend']} {r['precision']}: {c.get('threads')} threads; {opts}")
    L += ["", "## Throughput (frames per second by prompts per frame)", ""]
    counts = [x["prompts"] for x in next(iter(res["throughput"].values()), [])]
    if counts:
        L += [
            "| backend / precision | "
            + " | ".join(f"{k} prompt{'s' if k > 1 else ''}" for k in counts)
            + " | 8 / 1 frame time |",
            "|---|" + "---|" * (len(counts) + 1),
        ]
        for name, sweep in res["throughput"].items():
            by = {x["prompts"]: x for x in sweep}
            r81 = f"{by[8]['frame_ms'] / by[1]['frame_ms']:.2f}x" if 8 in by and 1 in by else "-"
            L.append(
                f"| {name} | "
                + " | ".join(f"{by[k]['frames_per_s']:.1f} ({by[k]['frame_ms']:.1f} ms)" for k in counts)
                + f" | {r81} |"
            )
        if res.get("physical_limit"):
            by = {x["prompts"]: x for x in res["physical_limit"]}
            L.append(
                "| **physical limit** (frame FLOPs / CPU peak) | "
                + " | ".join(
                    f"{by[k]['frames_per_s']:.0f} ({by[k]['frame_ms']:.1f} ms)" if k in by else "-" for k in counts
                )
                + (f" | {by[8]['frame_ms'] / by[1]['frame_ms']:.2f}x |" if 8 in by and 1 in by else " | - |")
            )
        L.append("")
    tc = res["text_cache"]
    if tc:
        L += [
            "## Text cache",
            "",
            f"{tc['backend']}: {tc['cached_ms']:.1f} ms per frame with cached prompt encodings, "
            f"{tc['uncached_ms']:.1f} ms when every frame encodes its prompt (ratio {tc['ratio']:.3f}).",
            "",
        ]
    cpu = res["cpu"]
    missing = res.get("not_measured") or {}
    L += [
        "## Achieved compute",
        "",
        f"CPU peak: {cpu.get('formula', '-')} ({cpu.get('source', '')}; clock from "
        f"{cpu.get('clock_source', '-')}, turbo not counted).",
    ]
    if cpu.get("sgemm_gflops"):
        L.append(
            f"Check: a 1024^3 float32 GEMM (NumPy's BLAS) reaches {cpu['sgemm_gflops']:.0f} GFLOP/s here = "
            f"{100 * cpu['sgemm_share_of_peak']:.0f}% of that peak"
            + (
                " -- MORE than the formula's peak: the formula under-counts this CPU."
                if cpu["sgemm_share_of_peak"] > 1
                else "."
            )
        )
    L.append("")
    if res["frame_gflops"] is None:
        L += [f"Not measured: {missing.get('flops', 'FLOPs need PyTorch')}.", ""]
    else:
        L += [
            f"FLOPs per frame (image encoder + decoder, 1 prompt): {res['frame_gflops']:.2f} GFLOPs; each further "
            "prompt adds the decoder's FLOPs.",
            "",
        ]
        for name, sweep in res["throughput"].items():
            shares = ", ".join(
                f"{x['prompts']}: {x['gflops_per_s']:.0f} GFLOP/s = {100 * x['cpu_peak_share']:.0f}%"
                for x in sweep
                if x.get("cpu_peak_share") is not None
            )
            if shares:
                L.append(f"- {name} (prompts: achieved = share of peak): {shares}")
    L += ["", "## Parameters and FLOPs per module (one frame + one prompt)", ""]
    if res["flops"] is None:
        L += [f"Not measured: {missing.get('flops', 'FLOPs need PyTorch')}."]
    else:
        L += ["| model | module | params (M) | GFLOPs |", "|---|---|---|---|"]
        for key in ("ssp_lite", "ssp_paper"):
            c = res["flops"][key]
            for part, v in c["parts"].items():
                L.append(
                    f"| {key} ({c['input_size']}) | {part} | {v['parameters'] / 1e6:.3f} | {v['flops'] / 1e9:.3f} |"
                )
            L.append(
                f"| {key} ({c['input_size']}) | **total** | {c['parameters'] / 1e6:.2f} | {c['flops'] / 1e9:.2f} |"
            )
        rus, bil = res["flops"].get("bundle_rus", res["flops"]["bundle"]), res["flops"]["bundle_bilinear"]
        rd = rus["parts"].get("RUS_decoder", {})
        bd = bil["parts"].get("bilinear_decoder", {})
        if rd and bd:
            form = rus.get("rus_form", "")
            why = (
                "the grouped RUS (a 1x1 gate on the skip projection, a grouped channel-replication conv, "
                "replicate x gate + add) costs the 4 multiply-adds per output value of interpolation"
                if rd["flops"] <= bd["flops"]
                else "in it, RUS's gate convolution on the raw skip feature and its C*s^2 channel-replication conv "
                "cost more than one 1x1 projection plus bilinear interpolation"
            )
            L += [
                "",
                f"RUS decoder vs bilinear decoder at {rus['input_size']}x{rus['input_size']}: "
                f"{rd['flops'] / 1e9:.3f} vs {bd['flops'] / 1e9:.3f} GFLOPs "
                f"({rd['parameters'] / 1e3:.0f}k vs {bd['parameters'] / 1e3:.0f}k parameters; bilinear "
                "interpolation counted at 4 multiply-adds per output value). This compares two decoders of "
                f"the same reconstructed model{f' ({form})' if form else ''}; {why}. The paper's fewer-FLOPs "
                "claim is a different comparison: the whole SSP model against other referring-segmentation "
                "methods, which this benchmark does not measure.",
            ]
            if rus.get("blocks") and bil.get("blocks"):
                L += [
                    "",
                    "| decoder block | RUS GFLOPs | bilinear GFLOPs | RUS params | bilinear params |",
                    "|---|---|---|---|---|",
                ]
                for k, rb in rus["blocks"].items():
                    bb = bil["blocks"].get(k)
                    if bb is not None:
                        L.append(
                            f"| {k} | {rb['flops'] / 1e9:.4f} | {bb['flops'] / 1e9:.4f} | {rb['parameters']:,} | "
                            f"{bb['parameters']:,} |"
                        )
    je = res["jetson_estimates"]
    if je is not None:
        cal = je.get("calibration") or {}
        L += [
            "",
            "## Estimated FPS on Jetson Orin (an ESTIMATE, not a measurement)",
            "",
            f"Calibrated against a published TensorRT measurement of a comparable network: {cal.get('model')} "
            f"({cal.get('gflops')} GFLOPs) at {cal.get('latency_ms')} ms ({cal.get('precision', '').upper()}) on "
            f"{cal.get('device')}, i.e. {100 * je['utilization']:.1f}% of that module's dense INT8 peak "
            f"(source: {cal.get('source')}). The same share of each module's dense peak is assumed for this model "
            "(INT8 dense = sparse TOPS / 2, FP16 dense = sparse TOPS / 4). Cross-check: "
            f"{cal.get('cross_check')}.",
            "",
            "| device | published INT8 TOPS (sparse) | est. FPS FP16 | est. FPS INT8 | physical limit INT8 |",
            "|---|---|---|---|---|",
        ]
        L += [
            f"| {j['device']} | {j['int8_tops_sparse']:.0f} | {j['fps_fp16']:.0f} | {j['fps_int8']:.0f} | "
            f"{j.get('physical_limit_fps_int8', 0):.0f} |"
            for j in je["rows"]
        ]
    lay = res.get("layers")
    if lay:
        L += ["", "## Per-op profile (--layers)", ""]
        if "skipped" in lay:
            L.append(f"Skipped: {lay['skipped']}.")
        for row, graphs in (lay.get("profiles") or {}).items():
            for label, p in graphs.items():
                top = ", ".join(f"{x['op_type']} {100 * x['share']:.0f}%" for x in p["by_type"][:6])
                L.append(f"- {row}, {label}: {p['total_ms']:.1f} ms kernel time; {top}")
        for k, v in (lay.get("notes") or {}).items():
            L.append(f"- {k}: {v}")
        if lay.get("files"):
            L.append(f"- per node: {', '.join(Path(f).name for f in lay['files'].values())}")
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
    ok = [r for r in res["rows"] if r["status"] == "ok" and r["stages"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    left = [0.0] * len(ok)
    labels = [f"{r['backend']}\n{r['precision']}" for r in ok]
    for s in _STAGES:
        vals = [r["stages"].get(s, {}).get("median_ms", 0.0) for r in ok]
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
        ax.plot([x["prompts"] for x in sweep], [x["frames_per_s"] for x in sweep], marker="o", label=name)
    if res.get("physical_limit"):
        lim = res["physical_limit"]
        ax.plot(
            [x["prompts"] for x in lim], [x["frames_per_s"] for x in lim], "k--", label="physical limit (FLOPs / peak)"
        )
    ax.set_xlabel("prompts per frame")
    ax.set_ylabel("frames per second")
    ax.set_yscale("log")
    ax.set_title("throughput")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(str(out_dir / "bench_throughput.png"))
    _save_png(fig, paths[-1])
    plt.close(fig)
    if not res.get("flops"):
        return paths
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
