"""PyTorch eager as a Segmenter backend: the reference a user would otherwise run, measured through the
same pipeline (letterbox, prompt cache, one decoder batch) as the deployed backends."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ssp_edge.sdk.bundle import Bundle

__all__ = ["TorchBackend"]


class TorchBackend:
    name = "pytorch"

    def __init__(self, bundle: Bundle, threads: int = 0):
        from ssp_edge.converter.source import load_manifest_source

        if threads:
            torch.set_num_threads(threads)
        self.model = load_manifest_source(bundle.manifest).model.eval()
        self.precisions = {"text_encoder": "fp32", "image_encoder": "fp32", "mask_decoder": "fp32"}

    @torch.inference_mode()
    def run(self, graph: str, feeds: dict[str, Any], to_host: bool = True) -> Sequence[np.ndarray]:
        t = {k: torch.from_numpy(np.asarray(v)) for k, v in feeds.items()}
        if graph == "text_encoder":
            out = self.model.text(t["input_ids"], t["attention_mask"])
        elif graph == "image_encoder":
            out = self.model.image(t["image"])
        else:
            from ssp_edge.ssp.models.ssp import IMAGE_FEATURES

            out = self.model.decoder(*(t[k] for k in IMAGE_FEATURES), t["words"], t["attention_mask"], t["sentence"])
        return [o.numpy() for o in out]

    def close(self) -> None:
        pass
