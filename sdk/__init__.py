"""SSP Edge runtime SDK (never imports torch). The `ssp` command dispatcher lives in :mod:`sdk.cli`."""

__all__: list[str] = []
__version__ = "0.1.0"
