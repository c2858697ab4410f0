"""Metrics to TensorBoard and ``metrics.jsonl``, and a progress bar that is quiet off a TTY."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm


class MetricsLogger:
    """Appends one JSON line per logged step and mirrors scalars to TensorBoard."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **metrics}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Progress:
    """A tqdm bar on a terminal; one plain line per log interval elsewhere (CI, files)."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.tty = enabled and sys.stderr.isatty()
        self.enabled = enabled
        self.bar = tqdm(total=total, initial=start, disable=not self.tty, dynamic_ncols=True)
        self.total, self.started, self.start_step = total, time.perf_counter(), start

    def update(self, step: int, metrics: dict[str, Any], logged: bool) -> None:
        if self.tty:
            self.bar.update(step - self.bar.n)
            if logged:
                self.bar.set_postfix(
                    loss=f"{metrics['loss']:.4f}", sps=f"{metrics['samples_per_s']:.1f}"
                )
        elif self.enabled and logged:
            elapsed = time.perf_counter() - self.started
            rate = (step - self.start_step) / max(elapsed, 1e-9)
            eta = (self.total - step) / rate if rate > 0 else float("inf")
            print(
                f"step {step}/{self.total}  loss {metrics['loss']:.4f}  "
                f"samples/s {metrics['samples_per_s']:.1f}  eta {eta:.0f}s",
                flush=True,
            )

    def close(self) -> None:
        self.bar.close()
