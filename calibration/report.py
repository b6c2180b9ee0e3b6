"""The calibration report: ``report.json`` (everything measured), ``report.md`` (for people) and
``report.png`` (accuracy, latency and sensitivity at a glance), written atomically."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ssp_edge.sdk.backends.precision_choice import ACCURACY_BOUND, MIN_EVAL_SAMPLES, int8_accuracy_fails
from ssp_edge.sdk.fsio import atomic_write_bytes

from .evaluate import METRIC_KEYS

__all__ = ["write_report", "summary", "INT8_MAX_DROP", "FP16_MAX_DROP"]

_LABEL = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8", "int8_tensorrt_plan": "INT8 (TensorRT plan)"}
INT8_MAX_DROP = 1.0  # mIoU points, the acceptance bound of issue 5
FP16_MAX_DROP = 0.2


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    return x


def _latency_main(report: dict) -> dict | None:
    lat = report.get("latency") or {}
    threads = str(report.get("options", {}).get("threads", 0))
    return lat.get(threads) or (next(iter(lat.values())) if lat else None)


def summary(report: dict, md_path: str) -> dict:
    """The object ``ssp calibrate --json`` prints."""
    acc = report.get("accuracy") or {}
    out: dict[str, Any] = {}
    for p in ("fp32", "fp16", "int8", "int8_tensorrt_plan"):
        if p in acc:
            out[p] = {k: acc[p].get(k) for k in METRIC_KEYS}
    lat = _latency_main(report)
    if lat:
        out["latency_ms"] = {
            **{p: v for p, v in lat["ms"].items()},
            "fp32_over_int8": lat.get("fp32_over_int8"),
            "threads": lat.get("threads"),
            "runs": lat.get("runs"),
            "prompts": lat.get("prompts"),
        }
    else:
        out["latency_ms"] = None
    out["report"] = md_path
    return _plain(out)


def _top_sensitive(r: dict, n: int = 10) -> list[dict]:
    rows = [s for v in (r.get("sensitivity") or {}).values() for s in v]
    return sorted(
        rows, key=lambda s: (s["mask_prob_mae"] is None, -(s["mask_prob_mae"] or 0.0), -s["local_rel_error"])
    )[:n]


def _fmt(v: Any, pct: bool = True) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f}" if pct else f"{v:.2f}"


def _markdown(r: dict) -> str:
    o = r["options"]
    cal = r.get("calibration", {})
    L: list[str] = ["# SSP Edge calibration report", ""]
    L.append(
        f"Bundle `{r['bundle']}`. Calibration: `{cal.get('data')}`, {cal.get('frames')} frames x up to "
        f"{cal.get('prompts_per_frame')} expressions ({cal.get('expressions')} expressions), method "
        f"**{cal.get('method')}**"
        + (f" (percentile {o['percentile']})" if cal.get("method") == "percentile" else "")
        + f", seed {cal.get('seed')}."
    )
    if cal.get("truncated_expressions"):
        L.append(
            f"{cal['truncated_expressions']} calibration expressions were longer than the model's max tokens "
            "and were truncated."
        )
    t = r.get("timings_s", {})
    L.append("Time: " + ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in t.items()) + ".")
    L.append("")

    acc = r.get("accuracy")
    if acc:
        L += [
            f"## Accuracy on `{acc['data']}` ({acc['samples']} held-out samples"
            + (
                f"; {acc['skipped_overlap']} skipped: image in the calibration set"
                if acc.get("skipped_overlap")
                else ""
            )
            + ")",
            "",
            "ONNX Runtime CPU through `sdk.Segmenter(precision=...)`, the bundle's thresholds. IoU metrics over "
            "target expressions, in %.",
            "",
            "| precision | graphs | mIoU | oIoU | " + " | ".join(k for k in METRIC_KEYS[2:]) + " | N-acc | "
            "mIoU drop (points) |",
            "|---|---|" + "---|" * (len(METRIC_KEYS) + 2),
        ]
        base = acc.get("fp32", {}).get("mIoU")
        for p in ("fp32", "fp16", "int8", "int8_tensorrt_plan"):
            if p not in acc:
                continue
            a = acc[p]
            drop = "" if p == "fp32" or base is None else f"{100 * (base - a['mIoU']):+.2f}"
            graphs = ", ".join(f"{g.split('_')[0]} {v}" for g, v in a.get("graphs", {}).items())
            L.append(
                f"| {_LABEL[p]} | {graphs} | "
                + " | ".join(_fmt(a.get(k)) for k in METRIC_KEYS)
                + f" | {_fmt(a.get('N-acc'))} | {drop} |"
            )
        L.append("")
        if "int8_tensorrt_plan" in acc:
            L.append(
                "INT8 = the ONNX Runtime plan the SDK runs on ONNX Runtime (U8S8: uint8 activations with a zero "
                "point, int8 per-channel weights, on the int8 region ONNX Runtime's CPU kernels speed up). "
                "INT8 (TensorRT plan) = the symmetric quantization TensorRT builds (every Conv/Gemm/MatMul but "
                "the kept ones, TensorRT placement), on the portable graphs so plain ONNX Runtime runs it with "
                "the SDK's pre/post-processing."
            )
            L.append("")
        for p, bound in (("int8", INT8_MAX_DROP), ("int8_tensorrt_plan", INT8_MAX_DROP), ("fp16", FP16_MAX_DROP)):
            if p in acc and base is not None:
                d = 100 * (base - acc[p]["mIoU"])
                L.append(
                    f"- {_LABEL[p]} mIoU drop {d:.2f} points: "
                    + ("within" if d <= bound else "**over**")
                    + f" the {bound} point bound."
                )
        if "int8" in acc and base is not None:
            why_not = int8_accuracy_fails(base, acc["int8"]["mIoU"], acc["samples"])
            L.append(
                f"- SDK default precision on ONNX Runtime (INT8 within {100 * ACCURACY_BOUND:g} points on >= "
                f"{MIN_EVAL_SAMPLES} samples, on a CPU with int8 dot products): "
                + ("INT8 qualifies." if why_not is None else f"FP32: {why_not}.")
            )
        L.append("")

    lat = r.get("latency")
    if lat:
        L += ["## ONNX Runtime CPU latency (image_encoder + mask_decoder)", ""]
        for threads, d in lat.items():
            L.append(
                f"Portable graphs through the SDK backend, {d['prompts']} prompt(s) per frame, intra-op threads "
                f"{threads if threads != '0' else 'default'}, median of {d['runs']} interleaved rounds:"
            )
            L += ["", "| precision | image_encoder ms | mask_decoder ms | total ms |", "|---|---|---|---|"]
            for p, v in d["ms"].items():
                L.append(f"| {p.upper()} | {v['image_encoder']:.1f} | {v['mask_decoder']:.1f} | {v['total']:.1f} |")
            ratio = d.get("fp32_over_int8")
            if ratio:
                L += ["", f"**FP32 / INT8 = {ratio:.2f}x** ({'INT8 faster' if ratio > 1 else 'INT8 not faster'})."]
            L.append("")

    plans = r.get("int8_plan")
    if plans:
        L += [
            "## INT8 graphs",
            "",
            "TensorRT plan: symmetric int8 Q/DQ, zero point 0, per-channel weights on the output-channel axis, "
            "float biases, checked against TensorRT's rules (what `ssp convert build --precision int8` builds). "
            "ONNX Runtime plan: uint8 activations with a zero point, int8 per-channel weights, int32 biases "
            "(ONNX Runtime's U8S8 kernels), written by `onnxruntime.quantization.quantize_static` from these "
            "statistics; data-movement ops inside the int8 region run in uint8 (passthrough). The text encoder "
            "stays FP32 (it runs once per new prompt and is cached).",
            "",
            "| graph / flavour | plan | file | int8 Conv/Gemm/MatMul | kept float | passthrough | Q/DQ nodes |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, p in plans.items():
            L.append(
                f"| {k} | {p.get('qdq_plan', p['placement'])} | {p.get('file', '')} | {p['quantized']} / "
                f"{p['nodes']} | {p['float']} | {p.get('passthrough', '-')} | {p['qdq_nodes']} |"
            )
        L.append("")
        for k, p in plans.items():
            reasons: dict[str, list[str]] = {}
            for node, why in p["kept_float"].items():
                cat = why[: why.index("' (") + 1] if why.startswith("group '") else why.split(" (")[0]
                reasons.setdefault(cat, []).append(node)
            if reasons:
                L.append(
                    f"- {k} kept float: "
                    + "; ".join(
                        f"{why}: {len(ns)}"
                        + (
                            f" ({', '.join(ns[:6])}{', ...' if len(ns) > 6 else ''})"
                            if not why.startswith("ONNX")
                            else ""
                        )
                        for why, ns in reasons.items()
                    )
                )
        L.append("")

    groups = r.get("group_sensitivity") or {}
    if groups:
        kept = {k for v in (r.get("kept_float") or {}).values() for k in v}
        L += [
            "## Sensitivity of node groups",
            "",
            "Mask prob. MAE with every node of the group in int8 at once (and with all nodes: `all`); a group "
            f"more than {o['group_ratio']:g}x every other group of its graph stays float.",
            "",
            "| graph | group | nodes | mask prob. MAE | kept float |",
            "|---|---|---|---|---|",
        ]
        for g, rows_ in groups.items():
            for row in rows_:
                k = "yes" if row["keys"] and all(x in kept for x in row["keys"]) else ""
                L.append(f"| {g} | {row['group']} | {row['nodes']} | {row['mask_prob_mae']:.2e} | {k} |")
        L.append("")
    rows = _top_sensitive(r)
    if rows:
        kept = {k for v in (r.get("kept_float") or {}).values() for k in v}
        L += [
            "## Sensitivity (top 10)",
            "",
            f"Mask prob. MAE: mean absolute change of the mask probabilities with only that node in int8, end "
            f"to end ({o['sensitivity_samples']} calibration frames; measured for the "
            f"{o['sensitivity_candidates']} nodes per graph with the largest local error). Local: relative L2 "
            "error of the node's own output from quantizing its inputs and weight.",
            "",
            "| # | graph | node | op | weight / key | mask prob. MAE | local rel. error | kept float |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for i, s in enumerate(rows, 1):
            mae = "-" if s["mask_prob_mae"] is None else f"{s['mask_prob_mae']:.2e}"
            L.append(
                f"| {i} | {s['graph']} | {s['node']} | {s['op_type']} | {s['key']} | {mae} | "
                f"{s['local_rel_error']:.3f} | {'yes' if s['key'] in kept else ''} |"
            )
        L.append("")

    err = r.get("output_error")
    if err and err["rows"]:
        L += [
            f"## Output error vs FP32 ({err['frames']} held-out frames, same inputs)",
            "",
            "| graph | flavour | precision | output | max abs | mean abs | max abs FP32 |",
            "|---|---|---|---|---|---|---|",
        ]
        for e in err["rows"]:
            L.append(
                f"| {e['graph']} | {e['flavour']} | {e['precision']} | {e['output']} | {e['max_abs']:.4g} | "
                f"{e['mean_abs']:.4g} | {e['ref_max_abs']:.4g} |"
            )
        L.append("")
    L += ["Build TensorRT engines from these graphs with `ssp convert build BUNDLE --precision int8` (or fp16).", ""]
    return "\n".join(L)


def _png(r: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    colours = {"fp32": "#4c72b0", "fp16": "#55a868", "int8": "#c44e52", "int8_tensorrt_plan": "#937860"}
    acc = r.get("accuracy") or {}
    ax = axes[0]
    precs = [p for p in ("fp32", "fp16", "int8", "int8_tensorrt_plan") if p in acc]
    if precs:
        x = np.arange(len(METRIC_KEYS))
        w = 0.8 / len(precs)
        for i, p in enumerate(precs):
            ax.bar(
                x + (i - (len(precs) - 1) / 2) * w,
                [100 * (acc[p].get(k) or 0) for k in METRIC_KEYS],
                w,
                label=_LABEL[p],
                color=colours[p],
            )
        ax.set_xticks(x, METRIC_KEYS, rotation=30)
        ax.set_ylabel("%")
        ax.set_title(f"accuracy on {acc.get('data')} ({acc.get('samples')} samples)")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=8, loc="upper right", ncol=2)
    else:
        ax.text(0.5, 0.5, "no evaluation", ha="center")
    ax = axes[1]
    lat = _latency_main(r)
    if lat:
        ps = list(lat["ms"])
        enc = [lat["ms"][p]["image_encoder"] for p in ps]
        dec = [lat["ms"][p]["mask_decoder"] for p in ps]
        ax.bar(ps, enc, label="image_encoder", color="#8172b2")
        ax.bar(ps, dec, bottom=enc, label="mask_decoder", color="#ccb974")
        for i, p in enumerate(ps):
            ax.text(i, enc[i] + dec[i], f"{lat['ms'][p]['total']:.0f} ms", ha="center", va="bottom")
        ratio = lat.get("fp32_over_int8")
        ax.set_title("ONNX Runtime CPU latency" + (f" (FP32/INT8 = {ratio:.2f}x)" if ratio else ""))
        ax.set_ylabel("ms (median)")
        ax.legend()
    ax = axes[2]
    rows = [s for s in _top_sensitive(r) if s["mask_prob_mae"]][::-1]
    if rows:
        ax.barh(
            [f"{s['graph'].split('_')[0]}: {s['node']}" for s in rows],
            [s["mask_prob_mae"] for s in rows],
            color="#dd8452",
        )
        ax.set_xscale("log")
        ax.set_title("sensitivity: mask prob. MAE, one node in int8")
        ax.tick_params(axis="y", labelsize=7)
    else:
        ax.text(0.5, 0.5, "no sensitivity pass", ha="center")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_report(folder: Path, report: dict) -> dict[str, Path]:
    """Write report.json / report.md / report.png into ``folder``; returns kind -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    rep = _plain(report)
    paths = {
        "report_json": folder / "report.json",
        "report_md": folder / "report.md",
        "report_png": folder / "report.png",
    }
    atomic_write_bytes(paths["report_json"], (json.dumps(rep, indent=1) + "\n").encode())
    atomic_write_bytes(paths["report_md"], _markdown(rep).encode())
    atomic_write_bytes(paths["report_png"], _png(rep))
    return paths
