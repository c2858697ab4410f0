"""Two CPU processes (gloo, launched with torchrun) with the same global batch as one
process end within float tolerance of the one-process weights, and a checkpoint written by
either layout resumes under the other."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_reliability_faults import TINY_MAE

from mmssl.recipe import recipe_from_dict
from mmssl.train.loop import pretrain
from mmssl.weights.checkpoints import checkpoint_dirs, model_weights

REPO = Path(__file__).resolve().parents[1]
# 48 examples, a global batch of 16: 3 steps an epoch; step 4 sits in the second epoch
STEPS = ["train.max_steps=6", "train.save_every=4", "train.keep_last=5", "data.max_examples=48"]


def torchrun(*args: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", str(port), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def launch(tmp_path: Path, run_dir: Path, *overrides: str, resume: bool = False) -> None:
    recipe_file = tmp_path / f"{run_dir.name}.yaml"
    recipe_file.write_text(yaml.safe_dump({**TINY_MAE, "output_dir": str(run_dir)}))
    torchrun("-m", "mmssl.cli", "pretrain", str(recipe_file), *overrides, *(["--resume"] if resume else []))


def assert_close(a: Path, b: Path, atol: float = 1e-5) -> None:
    wa, wb = model_weights(a), model_weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=atol, rtol=1e-4, msg=key)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("single") / "one"
    pretrain(recipe_from_dict(TINY_MAE, [f"output_dir={run_dir}", *STEPS]))
    return run_dir


@pytest.mark.slow
def test_two_processes_match_one_and_resume_across_process_counts(tmp_path, single):
    two = tmp_path / "two"
    launch(tmp_path, two, *STEPS, "train.batch_size=8")
    assert [p.name for p in checkpoint_dirs(two)] == ["step_00000004", "step_00000006"]
    # the same examples, masks and global batch: equal up to the order of float sums
    assert_close(checkpoint_dirs(single)[-1], checkpoint_dirs(two)[-1])
    one_at_4 = model_weights(checkpoint_dirs(single)[0])
    assert not all(torch.equal(one_at_4[k], v) for k, v in model_weights(checkpoint_dirs(two)[-1]).items())

    # two processes' step-4 checkpoint resumed by one process, and the other way round
    cut = tmp_path / "two_cut"
    shutil.copytree(two, cut)
    shutil.rmtree(checkpoint_dirs(cut)[-1])
    resumed = pretrain(recipe_from_dict(TINY_MAE, [f"output_dir={cut}", *STEPS]), resume="auto")
    assert resumed.step == 6
    assert_close(checkpoint_dirs(single)[-1], resumed.checkpoint)

    back = tmp_path / "one_cut"
    shutil.copytree(single, back)
    shutil.rmtree(checkpoint_dirs(back)[-1])
    launch(tmp_path, back, *STEPS, "train.batch_size=8", resume=True)
    assert_close(checkpoint_dirs(single)[-1], checkpoint_dirs(back)[-1])


@pytest.mark.slow
def test_streaming_with_two_processes_sees_each_example_once_per_epoch(tmp_path):
    import datasets
    from test_reliability_data import png

    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    rows = {"image": [{"bytes": png(i), "path": None} for i in range(32)], "label": list(range(32))}
    data = tmp_path / "train.parquet"
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(data))
    recipe = {**TINY_MAE, "output_dir": str(tmp_path / "run"),
              "data": {"source": "parquet", "data_files": {"train": str(data)}, "streaming": True,
                       "shuffle_buffer": 8, "image": {"size": 16}},
              # two global batches of 2 x 8: exactly one pass over the 32 rows
              "train": {**TINY_MAE["train"], "batch_size": 8, "max_steps": 2, "save_every": 0}}
    recipe_file = tmp_path / "stream.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe))
    torchrun(str(REPO / "tests" / "reliability_stream_worker.py"), str(recipe_file), str(tmp_path))
    seen = [json.loads((tmp_path / f"seen_{rank}.json").read_text()) for rank in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 16
    assert sorted(seen[0] + seen[1]) == list(range(32))


def fault_run(tmp_path: Path, mode: str, **train: object) -> list[dict]:
    run_dir = tmp_path / mode
    recipe = {**TINY_MAE, "output_dir": str(run_dir),
              "data": {**TINY_MAE["data"], "on_bad_example": "skip"},
              "train": {**TINY_MAE["train"], "batch_size": 8, **train}}
    recipe_file = tmp_path / f"{mode}.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe))
    torchrun(str(REPO / "tests" / "reliability_fault_worker.py"), str(recipe_file), str(tmp_path), mode)
    return [json.loads((tmp_path / f"result_{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.slow
def test_a_batch_left_empty_on_one_process_is_skipped_by_all_instead_of_hanging(tmp_path):
    # rank 1's whole first batch fails to decode; without agreement rank 0 would wait in the
    # step's collectives for a process that went on to its next batch (torchrun's timeout)
    results = fault_run(tmp_path, "bad_batch", max_steps=4, save_every=0)
    assert results[0] == results[1] == {"step": 4, "bad_examples": 8}
    assert [p.name for p in checkpoint_dirs(tmp_path / "bad_batch")] == ["step_00000004"]


@pytest.mark.slow
def test_a_save_failing_on_one_process_fails_on_all_and_keeps_the_last_checkpoint(tmp_path):
    results = fault_run(tmp_path, "save_fails", max_steps=6, save_every=2)
    for result in results:
        assert "step 4" in result["error"] and "on 1 of 2 process(es)" in result["error"]
        assert "last good checkpoint is" in result["error"] and "step_00000002" in result["error"]
    assert "No space left on device (planted)" in results[1]["error"]
    assert [p.name for p in checkpoint_dirs(tmp_path / "save_fails")] == ["step_00000002"]
    assert not list((tmp_path / "save_fails" / "checkpoints").glob(".tmp-*"))


@pytest.mark.slow
def test_mlm_on_two_processes_matches_one_process_and_trains_the_same_tokenizer(tmp_path, shared_data):
    # no tokenizer named: each run trains one into its run dir (the main process only);
    # dropout off, since its masks come from each process's own RNG stream
    recipe = {
        "name": "mlm2", "seed": 0, "task": {"name": "mlm"},
        "model": {"preset": "nano", "config": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}},
        "data": {"source": "parquet", "data_files": {"train": str(shared_data / "agnews" / "train.parquet")},
                 "max_examples": 200, "text": {"max_length": 32, "vocab_size": 300}},
        "train": {"max_steps": 4, "save_every": 0, "cpu": True, "lr": 1e-3, "warmup_steps": 1,
                  "log_every": 1, "progress": False},
    }
    torch.set_num_threads(1)
    one = pretrain(recipe_from_dict(recipe, [f"output_dir={tmp_path / 'one'}", "train.batch_size=16"]))
    two = tmp_path / "two"
    recipe_file = tmp_path / "mlm2.yaml"
    recipe_file.write_text(yaml.safe_dump({**recipe, "output_dir": str(two)}))
    torchrun("-m", "mmssl.cli", "pretrain", str(recipe_file), "train.batch_size=8")
    assert (two / "tokenizer" / "tokenizer.json").read_text() == (one.run_dir / "tokenizer" / "tokenizer.json").read_text()
    assert_close(one.checkpoint, checkpoint_dirs(two)[-1])
    # the logged loss is the mean over the global batch's masked tokens in both layouts
    losses = [[json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
              for run in (one.run_dir, two)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
