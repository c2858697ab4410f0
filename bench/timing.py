"""Timing shared by the throughput benchmarks: the same window for mmssl and its peer."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from transformers import TrainerCallback


class StepClock(TrainerCallback):
    """Wall time between the end of step ``warmup`` and the end of training (for ``Trainer``)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def mmssl_samples_per_s(run_dir: str | Path, warmup: int) -> float:
    """Mean samples/s of the logged windows after ``warmup`` (log_every = warmup)."""
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return statistics.mean(row["samples_per_s"] for row in rows if row["step"] > warmup)
