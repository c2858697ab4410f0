"""Where a run is: the trainer state a checkpoint saves as ``trainer_state.json``.

Everything the loop needs to continue exactly where it stopped (step, epoch, batch within
the epoch) and the counters the run reports (bad examples, NaN skips, examples seen, wall and
CPU seconds).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmssl.weights.checkpoints import STATE_FILE


@dataclass
class TrainerState:
    step: int = 0
    epoch: int = 0
    #: batches of ``epoch`` already drawn (a resumed run skips them)
    batch_in_epoch: int = 0
    bad_examples: int = 0
    #: the dataset rows found bad so far, so a bad file met again in a later epoch counts once
    bad_rows: list[int] = field(default_factory=list)
    seen_examples: int = 0
    nan_skips: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TrainerState:
        """The state of a ``trainer_state.json``; fields it lacks (older runs) keep their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})

    @classmethod
    def read(cls, checkpoint: Path) -> TrainerState:
        return cls.from_dict(json.loads((checkpoint / STATE_FILE).read_text()))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
