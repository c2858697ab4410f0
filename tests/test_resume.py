"""Resume: 2N steps in one go and N steps + resume + N steps end with identical weights."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from mmssl.errors import CheckpointError
from mmssl.recipe import recipe_from_dict
from mmssl.train.loop import pretrain
from mmssl.weights.checkpoints import checkpoint_dirs, model_weights, write_manifest

RECIPE = {
    "name": "resume",
    "task": {"name": "mae"},
    "model": {"preset": "nano", "config": {
        "patch_size": 4, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "decoder_hidden_size": 32, "decoder_num_hidden_layers": 1,
        "decoder_num_attention_heads": 2, "decoder_intermediate_size": 64}},
    # 40 examples in batches of 16: 2 batches an epoch, so 8 steps cross 3 epoch boundaries
    # and the step-3 checkpoint sits in the middle of an epoch.
    "data": {"source": "sklearn_digits", "max_examples": 40, "image": {"size": 16}},
    "train": {"batch_size": 16, "max_steps": 8, "save_every": 3, "keep_last": 5,
              "lr": 1e-3, "warmup_steps": 2, "log_every": 1, "progress": False},
}


def run(tmp_path, name, overrides=(), resume=None):
    recipe = recipe_from_dict(RECIPE, [f"output_dir={tmp_path / name}", *overrides])
    return pretrain(recipe, resume=resume)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_resume_mid_epoch_gives_bit_identical_weights(tmp_path, workers):
    overrides = [f"data.num_workers={workers}"]
    full = run(tmp_path, "full", overrides)
    assert full.step == 8
    steps = [int(p.name.split("_")[1]) for p in checkpoint_dirs(tmp_path / "full")]
    assert steps == [3, 6, 8]

    # an interrupted run: the same recipe that had only reached its step-3 checkpoint
    shutil.copytree(tmp_path / "full", tmp_path / "cut")
    for ckpt in checkpoint_dirs(tmp_path / "cut")[1:]:
        shutil.rmtree(ckpt)
    state = json.loads((checkpoint_dirs(tmp_path / "cut")[0] / "trainer_state.json").read_text())
    assert state["step"] == 3 and state["epoch"] == 1 and state["batch_in_epoch"] == 1
    resumed = run(tmp_path, "cut", overrides, resume="auto")
    assert resumed.step == 8

    a, b = model_weights(full.checkpoint), model_weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the logged losses after the resume point match the uninterrupted run too
    def losses(name):
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return {row["step"]: row["loss"] for row in rows}
    full_losses, cut_losses = losses("full"), losses("cut")
    for step in range(4, 9):
        assert cut_losses[step] == full_losses[step]


def test_a_run_directory_with_checkpoints_is_not_overwritten(tmp_path):
    run(tmp_path, "once", ["train.max_steps=1"])
    before = model_weights(checkpoint_dirs(tmp_path / "once")[-1])
    with pytest.raises(CheckpointError, match="already holds checkpoints; resume it with --resume"):
        run(tmp_path, "once", ["train.max_steps=1"])
    after = model_weights(checkpoint_dirs(tmp_path / "once")[-1])
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_keep_last_prunes_old_checkpoints(tmp_path):
    run(tmp_path, "prune", ["train.max_steps=6", "train.save_every=1", "train.keep_last=2"])
    names = [p.name for p in checkpoint_dirs(tmp_path / "prune")]
    assert names == ["step_00000005", "step_00000006"]
    assert not list((tmp_path / "prune" / "checkpoints").glob(".tmp-*"))


def test_same_seed_same_weights_different_seed_different(tmp_path):
    a = model_weights(run(tmp_path, "a", ["train.max_steps=2"]).checkpoint)
    b = model_weights(run(tmp_path, "b", ["train.max_steps=2"]).checkpoint)
    c = model_weights(run(tmp_path, "c", ["train.max_steps=2", "seed=1"]).checkpoint)
    key = "model.vit.embeddings.patch_embeddings.projection.weight"
    assert torch.equal(a[key], b[key])
    assert not torch.equal(a[key], c[key])


def test_trainer_state_counts_cpu_seconds_across_a_resume(tmp_path):
    """``cpu_s`` (process CPU time, the budget benchmarks state) grows per checkpoint and a
    resumed run adds to the checkpoint's count instead of starting again from zero."""
    run(tmp_path, "cpu", ["train.max_steps=2", "train.save_every=1"])
    first, second = (json.loads((d / "trainer_state.json").read_text())
                     for d in checkpoint_dirs(tmp_path / "cpu"))
    assert 0.0 < first["cpu_s"] <= second["cpu_s"]
    shutil.rmtree(checkpoint_dirs(tmp_path / "cpu")[-1])
    state_file = checkpoint_dirs(tmp_path / "cpu")[0] / "trainer_state.json"
    state_file.write_text(json.dumps({**first, "cpu_s": 1000.0}))
    write_manifest(state_file.parent)  # a verified checkpoint, as if step 1 had taken 1000 s
    resumed = run(tmp_path, "cpu", ["train.max_steps=2", "train.save_every=1"], resume="auto")
    assert json.loads((resumed.checkpoint / "trainer_state.json").read_text())["cpu_s"] > 1000.0
