"""Python-backend models of the Triton repository ``ssp convert triton`` writes (imported by its model.py files;
they run inside Triton's python backend stub, where ``triton_python_backend_utils`` exists).

* :class:`GraphModel`: one ONNX graph on ONNX Runtime, standing in for a TensorRT engine on CPU-only Triton
  builds (``--platform python``); requests that dynamic batching groups are run as one batch.
* :class:`SegmentModel` (``ssp_segment``): the BLS model: tokenising, letterbox, the three graph models by BLS
  requests (one text-encoder request per prompt, so the response cache holds each prompt once), the letterbox's
  inverse and thresholds, with the same arithmetic as the local ``Segmenter``.
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
        raise RuntimeError(f"{path} does not match its sha256 in config.pbtxt (modified or truncated); "
                           "re-run `ssp convert triton`")
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
                return [pb.InferenceResponse([pb.Tensor(n, np.ascontiguousarray(o[a:b]))
                                              for n, o in zip(self.outputs, outs)])
                        for a, b in zip(bounds[:-1], bounds[1:])]
            except Exception:  # fall back to one run per request, so only the bad one fails
                pass
        responses = []
        for f in feeds:
            try:
                outs = self.session.run(self.outputs, f)
                responses.append(pb.InferenceResponse([pb.Tensor(n, np.ascontiguousarray(o))
                                                       for n, o in zip(self.outputs, outs)]))
            except Exception as e:
                responses.append(_error(pb, e))
        return responses

    def finalize(self) -> None:
        self.session = None


class SegmentModel:
    """``ssp_segment``: BGR frame + prompts -> mask / prob / score / exists per prompt."""

    def initialize(self, args: dict[str, str]) -> None:
        from .bundle import Manifest
        from .stages import graph_entry
        from .tokenizer import Tokenizer

        cfg = json.loads(args["model_config"])
        p = _params(cfg)
        version = Path(args["model_repository"]) / args["model_version"]
        self.manifest = Manifest.from_dict(json.loads((version / "manifest.json").read_text()))
        man = self.manifest
        tok = _model_file(args, "tokenizer.json", man.files.get(man.tokenizer))
        self.tokenizer = Tokenizer(tok, man.max_tokens)
        self.text_model, self.image_model = p["text_model"], p["image_model"]
        self.decoder_model = p["decoder_model"]
        self.mask_threshold = float(p["mask_threshold"])
        self.exists_threshold = float(p["exists_threshold"])
        self.max_prompts = int(p["max_prompts"])
        self.text_outputs = [t.name for t in graph_entry(man, "text_encoder").outputs]
        self.image_outputs = [t.name for t in graph_entry(man, "image_encoder").outputs]
        self.decoder = graph_entry(man, "mask_decoder")
        self.outputs = [t["name"] for t in cfg["output"]]
        # the response cache does not merge concurrent misses: instances (processes) take turns for the text
        # encoder, so a new prompt that several cameras send at once is still encoded once (hits take ~0.1 ms)
        import tempfile

        key = hashlib.sha256(str(Path(args["model_repository"]).resolve()).encode()).hexdigest()[:16]
        self._text_lock = open(Path(tempfile.gettempdir()) / f"ssp_segment_text_{key}.lock", "a+")

    def _infer(self, model: str, inputs: dict[str, Any], outputs: list[str], host: bool = True) -> dict[str, Any]:
        """One BLS request; ``host``: outputs in CPU memory (read with as_numpy), else where the model left them
        (image features stay on the GPU when the engines run there and go straight into the decoder)."""
        pb = _pb()
        tensors = [v if isinstance(v, pb.Tensor) else pb.Tensor(k, np.ascontiguousarray(v))
                   for k, v in inputs.items()]
        kw = {}
        if host and hasattr(pb, "PreferredMemory"):
            kw["preferred_memory"] = pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU, 0)
        resp = pb.InferenceRequest(model_name=model, inputs=tensors, requested_output_names=outputs, **kw).exec()
        if resp.has_error():
            raise RuntimeError(f"{model}: {resp.error().message()}")
        return {n: pb.get_output_tensor_by_name(resp, n) for n in outputs}

    def _segment(self, request: Any) -> Any:
        pb = _pb()
        from .stages import check_prompts, decoder_feeds, postprocess, preprocess_frame

        image = pb.get_input_tensor_by_name(request, "image").as_numpy()
        raw = pb.get_input_tensor_by_name(request, "prompts").as_numpy().reshape(-1)
        prompts = check_prompts([x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in raw],
                                self.max_prompts)
        tok = self.tokenizer(prompts)
        encodings = []
        import fcntl

        with _Flock(self._text_lock, fcntl):
            for i in range(len(prompts)):  # one request per prompt: the response cache keys each prompt alone
                out = self._infer(self.text_model, {"input_ids": tok.input_ids[i:i + 1],
                                                    "attention_mask": tok.attention_mask[i:i + 1]}, self.text_outputs)
                enc = {k: v.as_numpy()[0] for k, v in out.items()}
                enc.update(input_ids=tok.input_ids[i], attention_mask=tok.attention_mask[i])
                encodings.append(enc)
        x, lb = preprocess_frame(image, self.manifest.input_size, self.manifest.mean, self.manifest.std)
        feats = self._infer(self.image_model, {"image": x}, self.image_outputs, host=False)  # passed on as they are
        dec = self._infer(self.decoder_model, decoder_feeds(self.decoder, feats, encodings),
                          ["mask_logits", "target_logit"])
        results = postprocess(dec["mask_logits"].as_numpy(), dec["target_logit"].as_numpy(), prompts, lb,
                              self.mask_threshold, self.exists_threshold)
        wanted = set(request.requested_output_names() or self.outputs)
        arrays = {"mask": lambda: np.stack([r.mask for r in results]),
                  "prob": lambda: np.stack([r.prob for r in results]).astype(np.float32),
                  "score": lambda: np.asarray([r.score for r in results], np.float32),
                  "exists": lambda: np.asarray([r.exists for r in results], np.bool_)}
        return pb.InferenceResponse([pb.Tensor(n, arrays[n]()) for n in self.outputs if n in wanted])

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
        self._text_lock.close()
