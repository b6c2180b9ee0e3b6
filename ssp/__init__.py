"""SSP reference model (PyTorch): backbones, text encoders, superpixel net, PWT/SWT/EPT, RUS decoder,
checkpoints, data (RefShapes, RefCOCO-format), metrics and training.

Importing ``ssp`` does not import torch; the submodules that need it do.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
