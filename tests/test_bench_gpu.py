"""bench/gpu.py --smoke: every workload trains a few steps beside Trainer and lands in the table,
so the script works the first time a GPU is lent."""

from __future__ import annotations

import pytest
import torch
from bench_helpers import load_bench_script


def load_bench():
    return load_bench_script("gpu")


@pytest.mark.slow
def test_gpu_bench_smoke_runs_every_workload_on_cpu(tmp_path):
    bench = load_bench()
    out = tmp_path / "gpu.md"
    assert bench.main(["--smoke", "--out", str(out)]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "(smoke)" in line]
    names = {"MAE", "BERT-base", "ModernBERT-base", "wav2vec 2.0", "SimCLR ResNet-50",
             "SimCLR ResNet-50, views on device"}
    for name in names:
        mine = [r for r in rows if r.startswith(f"| {name} (smoke)")]
        assert len(mine) == 2, (name, text)  # the mmssl loop and Trainer
        assert all("failed" not in r and "skipped" not in r for r in mine), text
        rate = float(mine[0].split("|")[3].split()[0])
        assert rate > 0


def test_mlm_collate_masks_like_bert():
    bench = load_bench()

    torch.manual_seed(0)
    ids = torch.randint(5, 100, (4000,))
    batch = bench.mlm_collate(vocab=100, mask_id=4)([{"input_ids": ids}])
    chosen = batch["labels"][0] != -100
    assert 0.13 < chosen.float().mean().item() < 0.17
    assert torch.equal(batch["labels"][0][chosen], ids[chosen])  # the originals are the targets
    assert torch.equal(batch["input_ids"][0][~chosen], ids[~chosen])  # the rest is untouched
    assert 0.75 < (batch["input_ids"][0][chosen] == 4).float().mean().item() < 0.85
