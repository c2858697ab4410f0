"""bench/simclr_vs_lightly.py with the ResNet recipe: both sides start from the same encoder,
lightly's model pools it as mmssl does, and a tiny run scores all four rows, pixels included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from bench_helpers import load_bench_script

pytest.importorskip("lightly")
ROOT = Path(__file__).resolve().parents[1]
RESNET_RECIPE = "recipes/simclr_resnet_cifar10.yaml"


def load_bench():
    return load_bench_script("simclr_vs_lightly")


def test_resnet_recipe_gives_both_sides_the_same_encoder(tmp_path):
    bench = load_bench()
    recipe = bench.load_recipe(ROOT / RESNET_RECIPE, [f"output_dir={tmp_path}"])
    torch.manual_seed(recipe.seed)
    ours = bench.new_backbone(recipe)
    theirs = bench.random_init_task(recipe).encoder
    assert type(ours).__name__ == "ResNetModel"
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    model = bench.SimCLR(ours, bench.backbone_kind(recipe), "mean", 64, 16).eval()
    x = torch.randn(3, 3, recipe.data.image.size, recipe.data.image.size)
    assert model(x).shape == (3, 16)
    features = ours(pixel_values=x).pooler_output.flatten(1)  # the global average mmssl pools
    assert torch.allclose(model.projection_head(features), model(x))


@pytest.mark.slow
def test_resnet_run_scores_mmssl_lightly_random_init_and_pixels(tmp_path, monkeypatch):
    if not (ROOT.parent / "shared/data/cifar10/train.parquet").is_file():
        pytest.skip("no shared CIFAR-10")
    monkeypatch.chdir(ROOT)  # the recipe reads ../shared/data
    out = tmp_path / "results.json"
    load_bench().main(["--recipe", RESNET_RECIPE, "--set", "task.temperature=0.5", "--steps", "3",
                       "--warmup", "1", "--lr-warmup", "1", "--batch-size", "8", "--max-train", "60",
                       "--max-test", "30", "--threads", "1", "--out", str(out)])
    results = json.loads(out.read_text())
    assert results["args"]["recipe"] == RESNET_RECIPE and results["args"]["set"] == ["task.temperature=0.5"]
    for side in ("mmssl", "lightly"):
        assert results[side]["images_per_s"] > 0 and torch.isfinite(torch.tensor(results[side]["last_loss"]))
    for row in (results["mmssl"]["mean"], results["lightly"]["mean"], results["random_init"]["mean"],
                results["pixels"]):
        assert set(row) == {"knn_top1", "linear_top1"} and all(0.0 <= v <= 1.0 for v in row.values())
    assert "cls" not in results["mmssl"]  # a ConvNet is scored once, with the recipe's pooling
