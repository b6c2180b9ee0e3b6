"""Activation statistics for calibration, collected in one streaming pass.

The graph is run on ONNX Runtime CPU with every tensor to calibrate added as an extra output; each run
updates, per tensor, the absolute maximum, the signed minimum and maximum and a histogram of ``|x|`` (2048 bins to
start, the bin width fixed once set and more bins appended when a larger value arrives, as TensorRT's and
pytorch-quantization's histogram calibrators do). Nothing of a run is kept after its update, so memory
does not grow with the number of samples. From the histograms, each method gives the clipping
threshold ``amax`` (scale = amax / 127):

* ``minmax``: the largest absolute value seen;
* ``percentile``: the ``percentile``-th percentile of ``|x|`` (default 99.99);
* ``entropy``: TensorRT's KL-divergence calibration: the threshold whose 128-level quantized
  distribution is closest (KL divergence) to the clipped reference distribution.

The TensorRT plan uses ``amax`` (symmetric); the ONNX Runtime plan (uint8 with a zero point) the signed extremes
clipped to its method's ``amax`` (:attr:`TensorRange.asymmetric`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx

__all__ = ["METHODS", "TensorRange", "TensorHistogram", "RangeCollector", "entropy_amax", "percentile_amax"]

METHODS = ("entropy", "percentile", "minmax")
_BINS = 2048
_MAX_BINS = 4 * _BINS
_HIST_SAMPLES = 1 << 16
_SMOOTH_EPS = 1e-4  # larger tensors are histogrammed on a strided subset (amax stays exact)


@dataclass(frozen=True)
class TensorRange:
    """What calibration knows of one tensor: the method's clipping threshold on ``|x|`` (TensorRT's symmetric scale
    is ``amax / 127``) and the signed extremes seen; :attr:`asymmetric` is the ``[lo, hi]`` an asymmetric (uint8,
    zero point) quantizer covers: the extremes clipped to the threshold."""

    amax: float
    lo: float
    hi: float

    @property
    def asymmetric(self) -> tuple[float, float]:
        return max(self.lo, -self.amax), min(self.hi, self.amax)


@dataclass
class TensorHistogram:
    """Running ``max |x|``, signed minimum / maximum and histogram of ``|x|`` with bins ``[k*width, (k+1)*width)``."""

    amax: float = 0.0
    width: float = 0.0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    count: int = 0
    lo: float = math.inf
    hi: float = -math.inf

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x)
        if x.size == 0:
            return
        xmin, xmax = float(x.min()), float(x.max())
        m = max(xmax, -xmin)  # exact max |x| without an |x| copy of the tensor
        flat = x.reshape(-1)
        a = np.abs(flat[:: flat.size // _HIST_SAMPLES + 1] if flat.size > _HIST_SAMPLES else flat)
        if not math.isfinite(m):  # inf / nan in the tensor: statistics of the finite values only
            fin = flat[np.isfinite(flat)]
            if fin.size == 0:
                return
            xmin, xmax = float(fin.min()), float(fin.max())
            m = max(xmax, -xmin)
            a = a[np.isfinite(a)]
        self.lo, self.hi = min(self.lo, xmin), max(self.hi, xmax)
        self.amax = max(self.amax, m)
        self.count += x.size
        if self.width == 0.0:
            if m == 0.0:
                self.hist = np.zeros(1, np.int64)
                self.hist[0] += a.size
                return
            self.width = m / _BINS
            zeros = int(self.hist.sum()) if self.hist.size else 0
            self.hist = np.zeros(_BINS, np.int64)
            self.hist[0] += zeros
        need = int(math.floor(m / self.width)) + 1
        if need > self.hist.size:
            self.hist = np.concatenate([self.hist, np.zeros(need - self.hist.size, np.int64)])
            while self.hist.size > _MAX_BINS:  # merge neighbours: coarser bins, bounded memory and search
                if self.hist.size % 2:
                    self.hist = np.append(self.hist, 0)
                self.hist = self.hist.reshape(-1, 2).sum(axis=1)
                self.width *= 2
        idx = np.minimum((a * (1.0 / self.width)).astype(np.int64), self.hist.size - 1)
        self.hist += np.bincount(idx, minlength=self.hist.size)

    def range_for(self, method: str, percentile: float = 99.99) -> TensorRange:
        """The method's threshold and the extremes (a tensor never seen: all zero)."""
        if not math.isfinite(self.lo):
            return TensorRange(0.0, 0.0, 0.0)
        return TensorRange(self.amax_for(method, percentile), self.lo, self.hi)

    def amax_for(self, method: str, percentile: float = 99.99) -> float:
        if method == "minmax" or self.width == 0.0:
            return self.amax
        if method == "percentile":
            return min(self.amax, percentile_amax(self.hist, self.width, percentile))
        if method == "entropy":
            return min(self.amax, entropy_amax(self.hist, self.width))
        raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")


def percentile_amax(hist: np.ndarray, width: float, percentile: float) -> float:
    """Upper edge of the bin where the cumulative share of ``|x|`` reaches ``percentile`` %."""
    total = hist.sum()
    if total == 0:
        return 0.0
    cdf = np.cumsum(hist) / total
    k = int(np.searchsorted(cdf, percentile / 100.0))
    return float(min(k + 1, hist.size) * width)


def entropy_amax(hist: np.ndarray, width: float, levels: int = 128, start: int = 128) -> float:
    """TensorRT's entropy calibration on a histogram of ``|x|``.

    For each candidate threshold bin ``i``: the reference ``p`` is ``hist[:i]`` with everything above
    added to its last bin; ``q`` merges ``hist[:i]`` into ``levels`` quantization levels and spreads each
    level's count evenly over its non-empty bins (a q of 0 under a non-zero p is smoothed to 1e-4). The
    threshold minimising KL(p || q) wins (the largest on ties). The first bin takes the second bin's count
    so a spike of exact zeros (ReLU outputs) does not dominate. All candidates are evaluated at once from
    prefix sums (no per-candidate loop)."""
    h = np.asarray(hist, np.float64).copy()
    n = h.size
    if n <= start:
        return float(n * width)
    h[0] = h[1]
    pos = h > 0
    hlogh = np.where(pos, h * np.log(np.where(pos, h, 1.0)), 0.0)
    S = np.concatenate([[0.0], np.cumsum(h)])
    NZ = np.concatenate([[0.0], np.cumsum(pos)])
    HL = np.concatenate([[0.0], np.cumsum(hlogh)])
    total = S[-1]
    if total <= 0:
        return float(n * width)
    cand = np.arange(start, n + 1)
    # bin j belongs to level floor(j * levels / i), so level g covers bins [ceil(g*i/levels), ceil((g+1)*i/levels))
    bounds = -((-np.arange(levels + 1)[None, :] * cand[:, None]) // levels)
    G = np.diff(S[bounds], axis=1)  # counts per level
    N = np.diff(NZ[bounds], axis=1)  # non-empty bins per level
    Q = S[cand]  # = sum of G
    tail = total - Q
    last = h[cand - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        logq = np.where(N > 0, np.log(np.where(N > 0, G, 1.0) / np.maximum(N, 1.0)), 0.0) - np.log(Q)[:, None]
        lastlog = logq[:, -1]
        plogp = (
            HL[cand]
            - hlogh[cand - 1]
            + np.where(last + tail > 0, (last + tail) * np.log(np.maximum(last + tail, 1e-300)), 0.0)
        )
        cross = np.sum(np.where(N > 0, G * logq, 0.0), axis=1) + np.where(last > 0, tail * lastlog, 0.0)
        kl = (plogp - cross) / total - np.log(total)
    # a candidate whose last bin is empty while values lie above it has q = 0 where p > 0: smooth q there
    # with eps, as MXNet's / ONNX Runtime's smooth_distribution does, so rare outliers can be clipped
    # (the O(eps) rescaling of the other bins is left out)
    kl = np.where((last == 0) & (tail > 0), kl - tail / total * np.log(_SMOOTH_EPS), kl)
    kl = np.where((Q <= 0) | ~np.isfinite(kl), np.inf, kl)
    if not np.isfinite(kl).any():
        return float(n * width)
    best = len(kl) - 1 - int(np.argmin(kl[::-1]))
    return float(cand[best] * width)


class RangeCollector:
    """Runs a graph with extra outputs and keeps a :class:`TensorHistogram` per requested tensor.

    ``tensors`` may name graph inputs (their statistics come from the feeds) and intermediate tensors.
    :meth:`run` returns the graph's own outputs (so the FP32 results can feed the next graph)."""

    def __init__(self, model: onnx.ModelProto, tensors: Iterable[str], threads: int = 0):
        from ssp_edge.sdk.backends.onnxruntime import create_session

        self.tensors = list(dict.fromkeys(tensors))
        inputs = {i.name for i in model.graph.input}
        self.outputs = [o.name for o in model.graph.output]
        m = onnx.ModelProto()
        m.CopyFrom(model)
        known = {v.name: v for v in list(m.graph.value_info) + list(m.graph.output)}
        self._extra = [t for t in self.tensors if t not in inputs and t not in self.outputs]
        for t in self._extra:
            vi = known.get(t)
            if vi is None:
                vi = onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
            m.graph.output.append(vi)
        self._session = create_session(m.SerializeToString(), threads=threads)
        self._fetch = self.outputs + self._extra
        self.stats: dict[str, TensorHistogram] = {t: TensorHistogram() for t in self.tensors}
        self.runs = 0

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        res = dict(zip(self._fetch, self._session.run(self._fetch, dict(feeds))))
        for t in self.tensors:
            v = feeds[t] if t in feeds else res[t]
            self.stats[t].update(v)
        self.runs += 1
        return {k: res[k] for k in self.outputs}

    def amax(self, method: str, percentile: float = 99.99) -> dict[str, float]:
        return {t: h.amax_for(method, percentile) for t, h in self.stats.items()}

    def ranges(self, method: str, percentile: float = 99.99) -> dict[str, TensorRange]:
        return {t: h.range_for(method, percentile) for t, h in self.stats.items()}
