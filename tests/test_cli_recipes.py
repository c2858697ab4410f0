"""``mmssl recipes`` (list, copy), ``pretrain --dry-run``, and the rerun hint of a finished run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mmssl.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_recipes_lists_the_shipped_ones(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    shipped = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == shipped
    assert "quickstart" in listed


def test_recipes_copy_writes_the_file_and_refuses_to_overwrite(tmp_path, capsys):
    assert main(["recipes", "copy", "quickstart", str(tmp_path)]) == 0
    copied = tmp_path / "quickstart.yaml"
    assert copied.read_text() == (ROOT / "recipes" / "quickstart.yaml").read_text()
    assert main(["recipes", "copy", "quickstart", str(copied)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["recipes", "copy", "quikstart", str(tmp_path / "x.yaml")]) == 2
    assert "unknown recipe 'quikstart'" in capsys.readouterr().err


def test_a_shipped_recipe_runs_by_name(capsys):
    assert main(["pretrain", "quickstart", "train.lr=fast"]) == 2
    assert "quickstart.yaml: train.lr: expected a number" in capsys.readouterr().err


def test_dry_run_validates_and_counts_without_writing(tmp_path, capsys):
    out_dir = tmp_path / "run"
    assert main(["pretrain", "quickstart", "--dry-run", "train.max_steps=45", f"output_dir={out_dir}"]) == 0
    out = capsys.readouterr().out
    assert "task:\n  name: mae" in out  # the resolved recipe
    assert "1,437 training examples" in out and "360 test examples for eval" in out
    params = int(re.search(r"parameters: ([\d,]+)", out).group(1).replace(",", ""))
    assert params > 100_000
    assert "45 steps of 64 x 1 (2.05 epochs)" in out  # 1,437 // 64 = 22 batches an epoch: 45 / 22
    assert not out_dir.exists()


def test_dry_run_reports_bad_data_as_a_one_line_error(tmp_path, capsys):
    code = main(["pretrain", "quickstart", "--dry-run", "data.columns.image=picture", f"output_dir={tmp_path}"])
    assert code == 2
    assert "data.columns.image: no column 'picture'" in capsys.readouterr().err


def test_dry_run_of_a_text_task_trains_its_tokenizer_out_of_the_run_dir(tmp_path, capsys):
    lines = [f"sample text number {i} about cats and dogs and birds" for i in range(300)]
    (tmp_path / "texts.txt").write_text("\n".join(lines))
    out_dir = tmp_path / "mlm"
    code = main(["pretrain", "recipes/mlm_agnews.yaml", "--dry-run", "data.source=text",
                 f"data.data_files={{train: {tmp_path / 'texts.txt'}}}", "data.columns={}",
                 "data.text.vocab_size=60", "data.text.max_length=32", "train.max_steps=5",
                 "eval=null", f"output_dir={out_dir}"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "parameters:" in out.out and "5 steps" in out.out
    assert not out_dir.exists()


@pytest.mark.slow
def test_the_rerun_hint_is_a_command_that_works(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["pretrain", str(ROOT / "recipes" / "quickstart.yaml"), "train.max_steps=2",
            "train.save_every=2", "eval=null", "output_dir=first"]
    assert main(args) == 0
    out = capsys.readouterr().out
    hint = re.search(r"rerun with: mmssl (pretrain \S+ \S+)\)", out).group(1)
    assert main(hint.split()) == 0
    assert (tmp_path / "first-rerun" / "checkpoints" / "step_00000002").is_dir()


def test_list_data_shows_the_data_sources_only(capsys):
    assert main(["list", "data"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("data sources:\n") and "  parquet " in out and "imagefolder" in out
    assert "tasks:" not in out and "heads:" not in out


def test_list_shows_whole_help_lines(capsys):
    assert main(["list", "heads"]) == 0
    dino = [line for line in capsys.readouterr().out.splitlines() if line.split()[0] == "dino"]
    assert dino and dino[0].endswith("prototypes.")  # was cut mid-sentence


@pytest.mark.slow
def test_the_wheel_ships_the_recipes(tmp_path):
    """A wheel (not only the editable install) holds every recipe under mmssl/recipes."""
    src = tmp_path / "src"
    for name in ("mmssl", "recipes"):
        shutil.copytree(ROOT / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("mmssl-*.whl"))
    names = {Path(n).stem for n in zipfile.ZipFile(wheel).namelist() if n.startswith("mmssl/recipes/")}
    assert names == {p.stem for p in (ROOT / "recipes").glob("*.yaml")}


def test_a_closed_pipe_ends_the_listing_without_a_traceback():
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "mmssl", "recipes"], cwd=ROOT,
                            stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    os.close(read_end)  # the reader is gone before mmssl writes, as with ``| head`` on a long list
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr
