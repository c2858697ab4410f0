"""Run by torchrun from test_reliability_multiprocess: faults on one process only.

``python reliability_fault_worker.py RECIPE OUT MODE`` trains MAE with a fault planted on
rank 1 and writes what happened to OUT/result_RANK.json:

- ``bad_batch``: every example of rank 1's first batch fails to preprocess (the others'
  batches are fine), so rank 1 is left with an empty batch;
- ``save_fails``: writing the checkpoint of step 4 fails on rank 1 only.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml
from accelerate import Accelerator

from mmssl.errors import CheckpointError
from mmssl.recipe import recipe_from_dict
from mmssl.tasks.mae import MAETask
from mmssl.train.loop import pretrain

RANK = int(os.environ.get("RANK", "0"))


def plant_bad_first_batch(batch_size: int) -> None:
    preprocess = MAETask.preprocess
    calls = {"n": 0}

    def failing(self, example, train=True):
        calls["n"] += 1
        if RANK == 1 and calls["n"] <= batch_size:
            raise ValueError("planted undecodable example")
        return preprocess(self, example, train)

    MAETask.preprocess = failing


def plant_failing_save(step: int) -> None:
    save_state = Accelerator.save_state

    def failing(self, output_dir=None, **kwargs):
        if RANK == 1 and output_dir and output_dir.endswith(f"step_{step:08d}"):
            raise OSError(28, "No space left on device (planted)")
        return save_state(self, output_dir, **kwargs)

    Accelerator.save_state = failing


def main(recipe_file: str, out: str, mode: str) -> None:
    recipe = recipe_from_dict(yaml.safe_load(Path(recipe_file).read_text()))
    if mode == "bad_batch":
        plant_bad_first_batch(recipe.train.batch_size)
    else:
        plant_failing_save(4)
    try:
        result = pretrain(recipe)
        outcome = {"step": result.step, "bad_examples": result.bad_examples}
    except CheckpointError as err:
        outcome = {"error": str(err)}
    (Path(out) / f"result_{RANK}.json").write_text(json.dumps(outcome))


if __name__ == "__main__":
    main(*sys.argv[1:4])
