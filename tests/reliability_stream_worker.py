"""Run by torchrun from test_reliability_multiprocess: trains MAE on a streaming split and
writes the labels (row ids) each process trained on to OUT/seen_RANK.json."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

from mmssl.recipe import recipe_from_dict
from mmssl.tasks.mae import MAETask
from mmssl.train.loop import pretrain


def main(recipe_file: str, out: str) -> None:
    seen: list[int] = []
    forward = MAETask.forward

    def recording(self, batch):
        seen.extend(batch["labels"].tolist())
        return forward(self, batch)

    MAETask.forward = recording
    # pretraining drops the columns a task does not read; let the row ids through for this record
    MAETask.optional_columns = ("label",)
    pretrain(recipe_from_dict(yaml.safe_load(Path(recipe_file).read_text())))
    (Path(out) / f"seen_{os.environ.get('RANK', '0')}.json").write_text(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
