"""Metrics to ``metrics.jsonl`` and the recipe's trackers, and a progress bar that is quiet off a TTY.

Trackers are accelerate's (``train.report_to``: ``tensorboard`` by default, ``wandb``,
``mlflow``, ``aim``, ``comet_ml``, ``clearml``, ``dvclive``, ``swanlab``, ``trackio``, ``all``
or ``none``); each gets the resolved recipe, flattened to ``section.key`` hyperparameters,
and every logged scalar. TensorBoard writes to ``RUN_DIR/tensorboard``; the others follow
their own settings (``WANDB_MODE``, ``MLFLOW_TRACKING_URI``, ...).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.tracking import (
    LOGGER_TYPE_TO_CLASS,
    GeneralTracker,
    TensorBoardTracker,
    get_available_trackers,
)
from tqdm.auto import tqdm

#: the package to install for a tracker whose name differs from it
TRACKER_PACKAGES = {"mlflow": "mlflow-skinny (or mlflow)", "comet_ml": "comet-ml"}


def build_trackers(report_to: str | list[str], run_dir: Path) -> list[str | GeneralTracker]:
    """accelerate's ``log_with`` for ``train.report_to``; a clear error for an unknown or
    missing tracker (accelerate would drop a missing one silently)."""
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    if names in ([], ["none"]):
        return []
    available = [str(t) for t in get_available_trackers()]
    if "all" in names:
        names = available
    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            known = ", ".join(sorted(LOGGER_TYPE_TO_CLASS))
            raise ValueError(f"train.report_to: unknown tracker {name!r} (known: {known}, all, none)")
        if name not in available:
            package = TRACKER_PACKAGES.get(name, name)
            raise ValueError(f"train.report_to: {name!r} is not installed; pip install {package}")
    # TensorBoard under RUN_DIR/tensorboard, where the run directory's listing says it is
    return [TensorBoardTracker("tensorboard", run_dir) if n == "tensorboard" else n for n in names]


def flat_hyperparameters(tree: dict[str, Any], prefix: str = "") -> dict[str, str | int | float | bool]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}``; lists and nulls as JSON text,
    which every tracker accepts as a hyperparameter value."""
    flat: dict[str, str | int | float | bool] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_hyperparameters(value, f"{name}."))
        elif isinstance(value, (str, int, float, bool)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat


class MetricsLogger:
    """Appends one JSON line per logged step and sends the scalars to the accelerator's trackers."""

    def __init__(
        self, accelerator: Accelerator, run_dir: Path, project: str, hyperparameters: dict[str, Any]
    ) -> None:
        self.accelerator = accelerator
        self.enabled = accelerator.is_main_process
        self.path = run_dir / "metrics.jsonl"
        accelerator.init_trackers(project, config=flat_hyperparameters(hyperparameters))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **metrics}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        self.accelerator.log(scalars, step=step)

    def close(self) -> None:
        """Finish every tracker (accelerate's ``end_training``)."""
        self.accelerator.end_training()


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
