"""TrainerState is what trainer_state.json holds: it round-trips, and reads older files."""

from __future__ import annotations

import json

from mmssl.train.state import TrainerState
from mmssl.weights.checkpoints import STATE_FILE


def test_trainer_state_round_trips_and_reads_a_file_with_the_old_samples_counter(tmp_path):
    state = TrainerState(step=7, epoch=2, batch_in_epoch=3, bad_examples=1, bad_rows=[5],
                         seen_examples=112, nan_skips=1, elapsed_s=4.5)
    (tmp_path / STATE_FILE).write_text(json.dumps({**state.as_dict(), "samples": 0}))
    assert TrainerState.read(tmp_path) == state
    assert TrainerState.from_dict({"step": 4}) == TrainerState(step=4)
