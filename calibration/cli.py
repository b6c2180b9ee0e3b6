"""`ssp calibrate DIR --data SPEC ...` (registered through the ``ssp_edge.commands`` entry points as
``calibrate = calibration.cli:register``)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from ssp_edge.sdk.backends.precision_choice import ACCURACY_BOUND, MIN_EVAL_SAMPLES

__all__ = ["register", "main"]


def register(sub: argparse._SubParsersAction) -> None:
    from ssp_edge.sdk.cli import require_modules
    from ssp_edge.sdk.options import add_backend_args, add_json_arg

    require_modules("torch", "onnx", "onnxruntime", "matplotlib", extra="calibrate")
    p = sub.add_parser(
        "calibrate",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="add INT8 (Q/DQ) and FP16 graphs to a bundle, with an accuracy / latency report",
        description="Post-training quantization of a bundle: calibrate activation ranges on real frames, find the "
        "layers most sensitive to int8, write INT8 Q/DQ graphs of image_encoder and mask_decoder in two "
        "plans (TensorRT's: symmetric int8, zero point 0, per-channel weights, what `ssp convert build "
        "--precision int8` builds; ONNX Runtime's: uint8 activations with a zero point and int8 "
        "per-channel weights where its CPU kernels are faster, what precision int8 runs on ONNX Runtime) "
        "and FP16 graphs of all three, then measure FP32 / FP16 / INT8 accuracy on a held-out set "
        "(ONNX Runtime CPU), output error and latency. Report: DIR/calibration/report.{json,md,png}; "
        "--json prints fp32 / fp16 / int8 metrics, latency_ms and the report path.",
    )
    p.add_argument("bundle", metavar="DIR", help="bundle folder (from `ssp convert export`)")
    p.add_argument(
        "--data",
        default=None,
        help="calibration data: refshapes:SPLIT, refshapes2:SPLIT, refcoco:ROOT:DATASET:SPLITBY:SPLIT, or jsonl:PATH "
        '(a JSONL file of {"image": ..., "expression": ...} lines, image paths relative to it, or its folder); '
        "default: the val split of the RefShapes family the bundle's checkpoint was trained on (refshapes2:val for "
        "the shipped one; refshapes:val when the manifest does not say)",
    )
    p.add_argument(
        "--method",
        choices=("entropy", "percentile", "minmax"),
        default="entropy",
        help="activation range of the TensorRT plan: TensorRT's KL-entropy, a percentile of |x|, or the "
        "absolute maximum",
    )
    p.add_argument(
        "--ort-method",
        choices=("entropy", "percentile", "minmax"),
        default="minmax",
        help="activation range of the ONNX Runtime plan (uint8 with a zero point): the observed minimum / "
        "maximum, or those clipped to the entropy / percentile threshold of |x|",
    )
    p.add_argument("--percentile", type=float, default=99.99, help="with --method percentile")
    p.add_argument("--samples", type=int, default=512, help="calibration frames (images)")
    p.add_argument("--prompts", type=int, default=2, help="expressions per calibration frame (the decoder's batch)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (same seed, same frames)")
    p.add_argument(
        "--exclude",
        action="append",
        default=None,
        metavar="NODE_OR_OP",
        help="keep these Conv/Gemm/MatMul nodes in float: node name, weight name (globs allowed, e.g. "
        "'decoder.blocks.3.*'), op type or 'depthwise' (repeatable; default: the --keep-fp32 most "
        "sensitive nodes of each graph)",
    )
    p.add_argument(
        "--keep-fp32",
        type=int,
        default=3,
        help="without --exclude: how many of the most sensitive nodes per graph stay in float",
    )
    p.add_argument(
        "--group-ratio",
        type=float,
        default=2.0,
        help="without --exclude: a node group (convolutions, depthwise convolutions, Gemms, attention "
        "products, ...) whose quantization alone hurts the masks more than this many times any "
        "other group of its graph stays float (0: off)",
    )
    p.add_argument(
        "--sensitivity-samples",
        type=int,
        default=8,
        help="frames for the one-node-at-a-time sensitivity pass (0 skips it)",
    )
    p.add_argument(
        "--sensitivity-candidates",
        type=int,
        default=12,
        help="per graph: how many nodes (largest local error) the sensitivity pass measures end to end",
    )
    p.add_argument(
        "--min-intensity",
        type=float,
        default=48.0,
        help="ONNX Runtime plan: a Conv / Gemm / MatMul between float nodes with fewer MACs per activation "
        "element stays float (its two conversions cost more than int8 saves); 0 keeps every such "
        "node int8",
    )
    p.add_argument("--no-fp16", action="store_true", help="do not write FP16 graphs")
    p.add_argument("--no-int8", action="store_true", help="do not write INT8 graphs")
    p.add_argument(
        "--eval-data",
        default=None,
        help="held-out data with masks (refshapes / refshapes2 / refcoco spec); default: the test split of the "
        "family --data defaults to",
    )
    p.add_argument(
        "--eval-samples",
        type=int,
        default=500,
        help="held-out samples for mIoU / oIoU / Prec@X (0 skips), recorded in the manifest with the sha256 of each "
        f"graph that ran: the SDK's default precision on ONNX Runtime is INT8 only where that record shows INT8 "
        f"within {ACCURACY_BOUND} mIoU of FP32 on >= {MIN_EVAL_SAMPLES} samples",
    )
    p.add_argument(
        "--no-trt-plan-eval",
        action="store_true",
        help="skip evaluating the TensorRT graphs' INT8 plan (every node but the kept ones) on the held-out set",
    )
    p.add_argument("--error-samples", type=int, default=8, help="held-out frames for the per-graph output error")
    p.add_argument("--latency-runs", type=int, default=20, help="interleaved timing rounds (median)")
    add_json_arg(p)
    add_backend_args(p, which=("threads",))
    p.set_defaults(func=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    from .errors import CalibrationError, CalibrationWarning

    if args.threads < 0:
        raise CalibrationError(f"--threads must be 0 or more, got {args.threads}")
    from .pipeline import CalibrateOptions, calibrate_bundle
    from .report import summary

    opts = CalibrateOptions(
        data=args.data,
        method=args.method,
        samples=args.samples,
        prompts=args.prompts,
        seed=args.seed,
        percentile=args.percentile,
        exclude=args.exclude,
        keep_fp32=args.keep_fp32,
        group_ratio=args.group_ratio,
        sensitivity_samples=args.sensitivity_samples,
        sensitivity_candidates=args.sensitivity_candidates,
        min_intensity=args.min_intensity,
        fp16=not args.no_fp16,
        int8=not args.no_int8,
        eval_data=args.eval_data,
        eval_samples=args.eval_samples,
        error_samples=args.error_samples,
        trt_plan_eval=not args.no_trt_plan_eval,
        latency_runs=args.latency_runs,
        threads=args.threads,
        progress=not args.json,
        ort_method=args.ort_method,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        shown = warnings.showwarning

        def one_line(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, CalibrationWarning):
                print(f"ssp calibrate: warning: {message}", file=sys.stderr)
            else:  # pragma: no cover - third-party warnings keep their usual form
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = one_line
        try:
            res = calibrate_bundle(args.bundle, opts)
        finally:
            warnings.showwarning = shown
    md = res.files.get("report_md", "")
    if args.json:
        print(json.dumps(summary(res.report, md)))
        return 0
    s = summary(res.report, md)
    for p in ("fp32", "fp16", "int8", "int8_tensorrt_plan"):
        if p in s:
            m = s[p]
            print(
                f"{p.upper().replace('_TENSORRT_PLAN', ' (TensorRT plan)'):5s} "
                f"mIoU {100 * m['mIoU']:.2f}  oIoU {100 * m['oIoU']:.2f}  "
                + "  ".join(f"{k} {100 * m[k]:.1f}" for k in m if k.startswith("prec@"))
            )
    lat = s.get("latency_ms")
    if lat:
        parts = [f"{p.upper()} {lat[p]['total']:.1f} ms" for p in ("fp32", "fp16", "int8") if p in lat]
        ratio = lat.get("fp32_over_int8")
        print(
            "latency (image_encoder + mask_decoder, ONNX Runtime CPU): "
            + ", ".join(parts)
            + (f"; FP32/INT8 = {ratio:.2f}x" if ratio else "")
        )
    print(f"added to {res.bundle}: {', '.join(res.graphs)}")
    print(f"report: {md}")
    return 0


def main(argv=None) -> int:  # pragma: no cover - `ssp calibrate` before the entry point is registered
    parser = argparse.ArgumentParser(prog="ssp")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["calibrate", *(sys.argv[1:] if argv is None else argv)])
    from ssp_edge.sdk.errors import SSPEdgeError

    try:
        return int(args.func(args) or 0)
    except SSPEdgeError as e:  # same contract as the `ssp` dispatcher
        print(f"ssp calibrate: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
