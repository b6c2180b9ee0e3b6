"""Data: the Sample type, RefShapes (synthetic), RefCOCO-format loading, data specs, letterboxing."""

from .sample import Sample
from .spec import open_data

__all__ = ["Sample", "open_data"]
