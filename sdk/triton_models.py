"""Python-backend models of the Triton repository ``ssp convert triton`` writes (imported by its model.py files;
they run inside Triton's python backend stub, where ``triton_python_backend_utils`` exists).

* :class:`GraphModel`: one ONNX graph on ONNX Runtime, standing in for a TensorRT engine on CPU-only Triton
  builds (``--platform python``); requests that dynamic batching groups are run as one batch.
* :class:`SegmentModel` (``ssp_segment``): the BLS model: a ``Segmenter`` whose backend sends the three graphs to
  the graph models by BLS requests (:mod:`ssp_edge.sdk.backends.triton_bls`; one text-encoder request per prompt,
  so the response cache holds each prompt once), so tokenising, letterbox, decoder feeds, the letterbox's inverse
  and thresholds are the SDK's own code, not a copy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GraphModel", "SegmentModel"]


def _pb() -> Any:
    import triton_python_backend_utils as pb_utils  # only inside Triton's python backend

    return pb_utils


def _params(cfg: dict[str, Any]) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in cfg.get("parameters", {}).items()}


def _model_file(args: dict[str, str], name: str, sha256: str | None) -> bytes:
    """A file of this model version, refused when its sha256 differs from the one its config records."""
    path = Path(args["model_repository"]) / args["model_version"] / name
    data = path.read_bytes()
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError(
            f"{path} does not match its sha256 in config.pbtxt (modified or truncated); re-run `ssp convert triton`"
        )
    return data


def _error(pb: Any, e: BaseException) -> Any:
    return pb.InferenceResponse(output_tensors=[], error=pb.TritonError(f"{type(e).__name__}: {e}"))


class _Flock:
    """An exclusive flock on an open file for a with-block (across the python backend's instance processes)."""

    def __init__(self, f: Any, fcntl: Any):
        self.f, self.fcntl = f, fcntl

    def __enter__(self) -> None:
        self.fcntl.flock(self.f.fileno(), self.fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        self.fcntl.flock(self.f.fileno(), self.fcntl.LOCK_UN)


class GraphModel:
    """One bundle graph on ONNX Runtime CPU inside the python backend."""

    def initialize(self, args: dict[str, str]) -> None:
        import onnxruntime as ort

        cfg = json.loads(args["model_config"])
        params = _params(cfg)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if int(params.get("threads", "0") or 0):
            so.intra_op_num_threads = int(params["threads"])
        data = _model_file(args, params.get("model_file", "model.onnx"), params.get("sha256"))
        self.session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        self.inputs = [t["name"] for t in cfg["input"]]
        self.outputs = [t["name"] for t in cfg["output"]]
        self.batched = int(cfg.get("max_batch_size", 0)) > 0

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = _pb()
        feeds = []
        for r in requests:
            feeds.append({n: pb.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs})
        if self.batched and len(requests) > 1:  # dynamic batching: one run over every request's rows
            try:
                sizes = [f[self.inputs[0]].shape[0] for f in feeds]
                outs = self.session.run(self.outputs, {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs})
                bounds = np.cumsum([0, *sizes])
                return [
                    pb.InferenceResponse(
                        [pb.Tensor(n, np.ascontiguousarray(o[a:b])) for n, o in zip(self.outputs, outs)]
                    )
                    for a, b in zip(bounds[:-1], bounds[1:])
                ]
            except Exception:  # fall back to one run per request, so only the bad one fails
                pass
        responses = []
        for f in feeds:
            try:
                outs = self.session.run(self.outputs, f)
                responses.append(
                    pb.InferenceResponse([pb.Tensor(n, np.ascontiguousarray(o)) for n, o in zip(self.outputs, outs)])
                )
            except Exception as e:
                responses.append(_error(pb, e))
        return responses

    def finalize(self) -> None:
        self.session = None


class SegmentModel:
    """``ssp_segment``: BGR frame + prompts -> mask / prob / score / exists per prompt, by a
    :class:`~ssp_edge.sdk.segmenter.Segmenter` over :class:`~ssp_edge.sdk.backends.triton_bls.TritonBLSBackend`
    (the three graph models of this server)."""

    def initialize(self, args: dict[str, str]) -> None:
        import fcntl
        import tempfile

        from .backends.triton_bls import TritonBLSBackend, graph_entry_by_file
        from .bundle import GRAPHS, Manifest
        from .segmenter import Segmenter
        from .tokenizer import Tokenizer

        cfg = json.loads(args["model_config"])
        p = _params(cfg)
        version = Path(args["model_repository"]) / args["model_version"]
        man = Manifest.from_dict(json.loads((version / "manifest.json").read_text()))
        tok = Tokenizer(
            _model_file(args, "tokenizer.json", man.files.get(man.tokenizer)), man.max_tokens, vocab_size=man.vocab_size
        )
        # the response cache does not merge concurrent misses: instances (processes) take turns for the text
        # encoder, so a new prompt that several cameras send at once is still encoded once (hits take ~0.1 ms)
        key = hashlib.sha256(str(Path(args["model_repository"]).resolve()).encode()).hexdigest()[:16]
        self._text_lock = open(Path(tempfile.gettempdir()) / f"ssp_segment_text_{key}.lock", "a+")
        backend = TritonBLSBackend(
            {g: p[f"{g}_model"] for g in GRAPHS if f"{g}_model" in p},
            {g: graph_entry_by_file(man, g, p.get(f"{g}_graph")) for g in GRAPHS},
            man.dynamic_axes,
            _Flock(self._text_lock, fcntl),
        )
        thresholds = {k: float(p[f"{k}_threshold"]) if p.get(f"{k}_threshold") else None for k in ("mask", "exists")}
        self.seg = Segmenter(
            man, backend, tokenizer=tok, mask_threshold=thresholds["mask"], exists_threshold=thresholds["exists"]
        )
        self.outputs = [t["name"] for t in cfg["output"]]

    def _segment(self, request: Any) -> Any:
        from .remote import request_prompts, result_arrays

        pb = _pb()
        image = pb.get_input_tensor_by_name(request, "image").as_numpy()
        prompts = request_prompts(pb.get_input_tensor_by_name(request, "prompts").as_numpy())
        results = self.seg.segment(image, prompts)
        wanted = set(request.requested_output_names() or self.outputs)
        arrays = result_arrays(results, [n for n in self.outputs if n in wanted])
        return pb.InferenceResponse([pb.Tensor(n, a) for n, a in arrays.items()])

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = _pb()
        responses = []
        for r in requests:  # a bad request gets its error; the model keeps serving the others
            try:
                responses.append(self._segment(r))
            except Exception as e:
                responses.append(_error(pb, e))
        return responses

    def finalize(self) -> None:
        self.seg.close()
        self._text_lock.close()
