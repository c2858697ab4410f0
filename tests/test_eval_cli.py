"""End to end: a tiny MAE run evaluated by its recipe's ``eval:`` section and by ``mmssl eval``."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from mmssl.cli import main
from mmssl.eval.report import markdown_table
from mmssl.eval.runner import eval_data_configs, resolve_eval_config
from mmssl.recipe import recipe_from_dict


def tiny_recipe(run_dir, **eval_section) -> dict:
    return {
        "name": "tiny",
        "output_dir": str(run_dir),
        "task": {"name": "mae"},
        "model": {"preset": "nano", "config": {"patch_size": 4, "num_hidden_layers": 1}},
        "data": {"source": "sklearn_digits", "image": {"size": 16, "horizontal_flip": False}},
        "train": {"batch_size": 32, "max_steps": 4, "save_every": 4, "log_every": 2, "progress": False},
        "eval": eval_section,
    }


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    """``mmssl pretrain`` on a recipe with an eval section: the report comes with the run."""
    root = tmp_path_factory.mktemp("eval")
    run_dir = root / "run"
    recipe = tiny_recipe(
        run_dir,
        protocols=["linear", "knn", "finetune"],
        label_fractions=[0.1, 1.0],
        max_train_examples=200,
        max_test_examples=80,
        linear_epochs=5,
        linear_lrs=[0.01],
        finetune_epochs=1,
    )
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["pretrain", str(path)]) == 0
    return run_dir


@pytest.mark.slow
def test_pretrain_runs_the_eval_section(evaluated_run):
    eval_dir = evaluated_run / "eval"
    report = json.loads((eval_dir / "report.json").read_text())
    assert report["task"] == "mae" and report["num_classes"] == 10
    assert report["sizes"]["train"] + report["sizes"]["val"] == 200
    assert report["sizes"]["test"] == 80
    expected = {"pretrained": {"linear", "knn", "finetune"}, "random_init": {"linear", "knn"},
                "raw_input": {"linear", "knn", "finetune"}, "supervised_from_scratch": {"finetune"}}
    assert {model: set(results) for model, results in report["results"].items()} == expected
    # finetune has no network on the raw input: its raw-input row is the linear probe's
    assert report["results"]["raw_input"]["finetune"] == report["results"]["raw_input"]["linear"]
    for model in expected:
        for by_fraction in report["results"][model].values():
            assert set(by_fraction) == {"0.1", "1.0"}
            for scores in by_fraction.values():
                assert 0.0 <= scores["top1"] <= scores["top5"] <= 1.0
            # 10% of ~180 examples, at least one per class, nested under 100%
            assert 10 <= by_fraction["0.1"]["num_labels"] < by_fraction["1.0"]["num_labels"]
    linear = report["results"]["pretrained"]["linear"]["1.0"]
    assert linear["lr"] == 0.01 and "val_top1" in linear
    table = (eval_dir / "report.md").read_text()
    assert table == markdown_table(report)
    assert table.count("\n| linear |") == 2 and "random init top-1" in table
    assert "| raw input top-1 | supervised from scratch top-1 |" in table
    assert set(report["verdicts"]) == {"linear", "knn", "finetune"}
    assert "- finetune: pretrained " in table and "supervised from scratch" in report["verdicts"]["finetune"]
    for png in ("label_efficiency.png", "features_pca.png"):
        assert (eval_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_mmssl_eval_overrides_and_reuses_cached_features(evaluated_run, capsys):
    cache = evaluated_run / "eval" / "features" / "pretrained_train.safetensors"
    stamp = cache.stat().st_mtime_ns
    code = main(["eval", str(evaluated_run), "knn_k=5", "label_fractions=[1.0]", "--protocol", "knn"])
    assert code == 0
    report = json.loads((evaluated_run / "eval" / "report.json").read_text())
    assert set(report["results"]["pretrained"]) == {"knn"}
    assert report["settings"]["knn_k"] == 5
    assert set(report["results"]["random_init"]["knn"]) == {"1.0"}
    assert cache.stat().st_mtime_ns == stamp  # same checkpoint and data: features reused
    assert "| knn | 100% |" in capsys.readouterr().out


@pytest.mark.slow
def test_mmssl_eval_shows_progress_on_a_terminal_only(evaluated_run, monkeypatch, capsys):
    args = ["eval", str(evaluated_run), "label_fractions=[1.0]", "--protocol", "finetune"]
    assert main(args) == 0
    assert "finetune 1" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(args) == 0
    assert "pretrained finetune 1" in capsys.readouterr().err


def test_mmssl_eval_rejects_an_unknown_field(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(tiny_recipe(run_dir)))
    assert main(["eval", str(run_dir), "knn_kk=5"]) == 2
    assert "did you mean 'knn_k'" in capsys.readouterr().err


def test_missing_test_split_names_the_fix():
    recipe = recipe_from_dict(
        {"task": {"name": "mae"}, "data": {"source": "parquet", "data_files": {"train": "a.parquet"}}}
    )
    cfg = resolve_eval_config(recipe)
    with pytest.raises(ValueError, match=r"data.data_files.test=<file>"):
        eval_data_configs(recipe, cfg)
