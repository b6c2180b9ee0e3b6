"""Training logs of a run folder: ``log.csv`` (one row per step, floats at full precision), ``log.jsonl`` (the
same records, rounded, with the nested validation summary), TensorBoard scalars when the ``tensorboard``
package is installed, and ``curves.png`` (loss, learning rate, validation mIoU / gIoU) drawn from the CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ssp_edge.sdk.fsio import atomic_write_bytes

__all__ = ["CSV_COLUMNS", "TrainLog", "read_csv_log", "plot_curves"]

CSV_COLUMNS = (
    "step",
    "epoch",
    "lr",
    "sec",
    "samples_per_s",
    "total",
    "bce",
    "dice",
    "exists",
    "coarse",
    "relevance",
    "rel_iou",
    "train_rel_iou",
    "val_mIoU",
    "val_oIoU",
    "val_gIoU",
    "val_cIoU",
    "val_N-acc",
    "val_T-acc",
)


class TrainLog:
    """Appends step records to the run folder's logs (rank 0 only)."""

    def __init__(self, run: Path, tensorboard: bool = True):
        self.run = run
        self.csv_path = run / "log.csv"
        new = not self.csv_path.is_file()
        self._csv = self.csv_path.open("a", newline="")
        self._writer = csv.DictWriter(self._csv, CSV_COLUMNS, extrasaction="ignore")
        if new:
            self._writer.writeheader()
        self._jsonl = (run / "log.jsonl").open("a")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run / "tensorboard"))
            except Exception:  # tensorboard not installed: CSV + PNG only
                self.tb = None

    def write(self, rec: dict[str, Any]) -> None:
        row = {k: rec.get(k, "") for k in CSV_COLUMNS}
        for k, v in (rec.get("val") or {}).items():
            if f"val_{k}" in CSV_COLUMNS:
                row[f"val_{k}"] = "" if v is None else v
        self._writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
        self._csv.flush()
        rounded = {k: round(v, 5) if isinstance(v, float) and k != "lr" else v for k, v in rec.items()}
        self._jsonl.write(json.dumps(rounded) + "\n")
        self._jsonl.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(k.replace("val_", "val/"), v, int(rec["step"]))

    def close(self) -> None:
        self._csv.close()
        self._jsonl.close()
        if self.tb is not None:
            self.tb.close()


def read_csv_log(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``log.csv`` with numbers as floats (empty cells left out)."""
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: float(v) for k, v in r.items() if v not in ("", None)})
    return rows


def plot_curves(run: str | Path, out: str | Path | None = None) -> Path | None:
    """``curves.png`` of a run folder from its ``log.csv`` (None when matplotlib is missing or no rows)."""
    run = Path(run)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = read_csv_log(run / "log.csv")
    if not rows:
        return None
    out = Path(out) if out else run / "curves.png"
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    steps = [r["step"] for r in rows]
    ax = axes[0]
    for k in ("total", "bce", "dice", "coarse", "relevance", "exists"):
        pts = [(r["step"], r[k]) for r in rows if k in r]
        if pts:
            ax.plot(*zip(*pts), label=k, lw=1)
    ax.set_title("training losses")
    ax.set_xlabel("step")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    axes[1].plot(steps, [r.get("lr", 0.0) for r in rows], lw=1)
    axes[1].set_title("learning rate (SSP layers)")
    axes[1].set_xlabel("step")
    ax = axes[2]
    for k in ("val_mIoU", "val_gIoU", "val_cIoU", "train_rel_iou"):
        pts = [(r["step"], r[k]) for r in rows if k in r]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=k.replace("val_", "val "), lw=1)
    ax.set_title("validation")
    ax.set_xlabel("step")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return out
