"""Where a bundle's weights come from: see :mod:`ssp_edge.ssp.source` (the PyTorch backend needs it too, and ssp
never imports converter)."""

from ssp_edge.ssp.source import ModelSource, load_manifest_source, load_source

__all__ = ["ModelSource", "load_source", "load_manifest_source"]
