"""The bench's method: interleaved rounds. A machine whose speed changes during the run (a neighbour's burst, a clock
drop) must slow every row alike, so ratios between rows stay what the rows' own costs make them. Checked with a
fake clock (exact) and, end to end, with fake backends inside real Segmenters through ``run_bench``."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ssp_edge.benchmarks import bench
from ssp_edge.benchmarks.bench import BenchSettings, interleave, run_bench


class Machine:
    """A fake clock and a load that triples for a stretch of the run (calls [start, stop) of the run's total)."""

    def __init__(self, total_calls: int, start: float = 0.3, stop: float = 0.6, factor: float = 3.0):
        self.now, self.calls = 0.0, 0
        self.slow = range(int(start * total_calls), int(stop * total_calls))
        self.factor = factor

    def clock(self) -> float:
        return self.now

    def work(self, ms: float) -> None:
        self.now += ms / 1e3 * (self.factor if self.calls in self.slow else 1.0)
        self.calls += 1


def _runners(m: Machine) -> dict:
    # row cost = per-frame work + per-prompt work (ms), like an image encoder + a decoder batch
    costs = {"fast": (2.0, 1.0), "slow": (6.0, 2.0), "mid": (3.0, 1.5)}
    return {
        name: (lambda a, b: lambda k: (m.work(a + b * k), {"image_encoder": a})[1])(a, b)
        for name, (a, b) in costs.items()
    }


def test_a_slow_phase_lands_on_every_row_alike():
    counts, rounds, warmup = (1, 2, 8), 20, 2
    m = Machine(total_calls=3 * len(counts) * (rounds + warmup))
    out = interleave(_runners(m), counts, rounds, warmup, seed=1, clock=m.clock)
    med = {n: {k: float(np.median(out[n][k]["total"])) for k in counts} for n in out}
    for k in counts:  # the rows' own cost ratios, as if the machine had been quiet throughout
        assert med["slow"][k] / med["fast"][k] == pytest.approx((6 + 2 * k) / (2 + k), rel=1e-9)
        assert med["mid"][k] / med["fast"][k] == pytest.approx((3 + 1.5 * k) / (2 + k), rel=1e-9)
    assert med["fast"][8] / med["fast"][1] == pytest.approx(10 / 3, rel=1e-9)  # prompt-count ratios hold too
    slowed = sum(v > 1.5 * (2 + 1) for v in out["fast"][1]["total"])
    assert 0 < slowed < rounds / 2  # the slow phase did hit this row, in a minority of its rounds
    assert all(len(out[n][k]["total"]) == rounds for n in out for k in counts)
    assert out["slow"][1]["image_encoder"] == [6.0] * rounds  # the runner's own stage times are kept


def test_measuring_rows_one_after_another_would_not_be_fair():
    """The control: the same machine measured row by row (the old bench) puts the slow phase on one row."""
    rounds = 20
    m = Machine(total_calls=3 * rounds, start=0.3, stop=0.7)
    runners = _runners(m)
    med = {}
    for name in ("fast", "mid", "slow"):
        t = []
        for _ in range(rounds):
            t0 = m.clock()
            runners[name](1)
            t.append((m.clock() - t0) * 1e3)
        med[name] = float(np.median(t))
    assert med["mid"] / med["fast"] == pytest.approx(3 * 4.5 / 3)  # "mid" looks 3x worse than it is


def test_every_cell_runs_once_per_round_in_a_new_order():
    seen: list[tuple[str, int]] = []
    runners = {n: (lambda n: lambda k: (seen.append((n, k)), {})[1])(n) for n in ("a", "b", "c")}
    interleave(runners, (1, 4), rounds=5, warmup=1, seed=0)
    rounds = [seen[i : i + 6] for i in range(0, len(seen), 6)]
    assert len(rounds) == 6 and all(sorted(r) == sorted((n, k) for n in "abc" for k in (1, 4)) for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # shuffled


class FakeBackend:
    """A backend whose outputs are zeros of the manifest's shapes and whose time is ``base_ms`` per image-encoder
    run and ``per_prompt_ms`` per decoded prompt, times the shared machine load (3x for calls 35%..65% of the run)."""

    name = "fake"
    calls = 0
    total = 1

    def __init__(self, bundle, base_ms: float, per_prompt_ms: float):
        self.bundle = bundle
        self.base_ms, self.per_prompt_ms = base_ms, per_prompt_ms
        self.precisions = {g: "fp32" for g in ("text_encoder", "image_encoder", "mask_decoder")}
        self.entries = {g: bundle.graph(g, "portable", "fp32") for g in self.precisions}

    def _load(self) -> float:
        FakeBackend.calls += 1
        return 3.0 if 0.35 * FakeBackend.total <= FakeBackend.calls < 0.65 * FakeBackend.total else 1.0

    def run(self, graph, feeds, to_host=True):
        e = self.entries[graph]
        dims: dict[str, int] = {}
        for t in e.inputs:
            for s, v in zip(t.shape, np.shape(feeds[t.name])):
                if isinstance(s, str):
                    dims[s] = int(v)
        if graph != "text_encoder":
            k = dims.get("expressions", 0)
            time.sleep((self.base_ms if graph == "image_encoder" else self.per_prompt_ms * k) / 1e3 * self._load())
        return {
            t.name: np.zeros([dims.get(s, 1) if isinstance(s, str) else s for s in t.shape], np.float32)
            for t in e.outputs
        }

    def close(self):
        pass


@pytest.mark.slow
def test_run_bench_interleaves_real_segmenters(lite_bundle, tmp_path, monkeypatch):
    """End to end: two fake rows in real Segmenters through run_bench while the machine slows down mid-run. The
    ratio of their frame times stays the rows' own (8 + 2 ms vs 16 + 4 ms per 1-prompt frame: 0.5)."""
    from ssp_edge.sdk.bundle import Bundle

    b = Bundle.open(lite_bundle)

    def candidates(bundle, s, frame, prompts):
        return [
            ("pytorch", "fp32", lambda: FakeBackend(bundle, 16.0, 4.0), "", ""),
            ("onnxruntime", "fp32", lambda: FakeBackend(bundle, 8.0, 2.0), "", ""),
        ]

    monkeypatch.setattr(bench, "_candidates", candidates)
    monkeypatch.setattr(bench, "_flops", lambda bundle: None)
    s = BenchSettings(warmup=1, iters=9, prompt_counts=(1, 2), settle_s=0.0, sgemm=False)
    # calls per round: 2 rows x 2 counts x 2 decoder-side graphs + the uncached-text row (1 prompt)
    FakeBackend.calls, FakeBackend.total = 0, (s.warmup + s.iters) * (2 * 2 * 2 + 2) + 2 * 2
    res = run_bench(b.root, s, tmp_path, progress=False)
    assert res["ratios"]["ort_fp32_over_pytorch"] == pytest.approx(0.5, rel=0.2)
    tp = {x["prompts"]: x["frame_ms"] for x in res["throughput"]["onnxruntime fp32"]}
    assert tp[2] / tp[1] == pytest.approx(12 / 10, rel=0.15)
    assert res["method"].startswith("interleaved rounds") and res["load_average"]["start"]
    assert "Load average" in (tmp_path / "bench.md").read_text()
