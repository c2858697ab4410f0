"""bench/time_to_accuracy.py in its audio and text modes: a few steps on small subsets of the
real data, through the tasks' own data path, land in results, a table and a plot."""

from __future__ import annotations

import json

import pytest
from bench_helpers import load_bench_script


def load_bench():
    return load_bench_script("time_to_accuracy")


@pytest.mark.slow
@pytest.mark.parametrize("modality, methods, limit", [
    ("audio", ["wav2vec 2.0", "data2vec 2.0"], 90),
    ("text", ["MLM", "data2vec 2.0"], 200),
])
def test_time_to_accuracy_smoke(tmp_path, modality, methods, limit):
    bench = load_bench()
    if not bench.MODALITIES[modality].data_file.is_file():
        pytest.skip(f"no shared {modality} data")
    bench.main(["--modality", modality, "--seconds", "0.4", "--points", "2", "--limit", str(limit),
                "--batch-size", "8", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in results["results"]] == methods
    for r in results["results"]:
        assert [p["seconds"] for p in r["curve"]][0] == 0.0 and len(r["curve"]) == 3  # init + 2 points
        assert r["curve"][-1]["seconds"] >= 0.4 and r["steps"] > 1
        for point in r["curve"]:
            assert 0.0 <= point["knn"] <= 1.0 and 0.0 <= point["linear"] <= 1.0
    assert {(g["metric"], g["method"]) for g in results["speedups"]} == {
        (metric, m) for metric in ("knn", "linear") for m in methods}
    table = (tmp_path / "table.md").read_text().splitlines()
    for method in methods:
        assert sum(line.startswith(f"| {method} | ") for line in table) == 1  # one curve row per method
    assert (tmp_path / f"time_to_accuracy_{modality}.png").stat().st_size > 0


def test_modality_splits_are_disjoint_where_they_must_be():
    bench = load_bench()
    for cls in (bench.ImageModality, bench.AudioModality, bench.TextModality):
        spans = cls.splits.spans(2250)
        assert set(spans["pretrain"]).isdisjoint(spans["val"]) and set(spans["select"]).isdisjoint(spans["val"])
        assert set(spans["probe_train"]) <= set(spans["pretrain"]) and len(spans["val"]) > 0
    assert bench.ImageModality.splits.spans(10_000)["val"] == range(9000, 10_000)  # the image rows of #17
    assert bench.AudioModality.splits.spans(2250)["pretrain"] == range(0, 1500)


def test_unknown_method_for_a_modality_is_a_usage_error(capsys):
    bench = load_bench()
    with pytest.raises(SystemExit):
        bench.parse_args(["--modality", "audio", "--methods", "MAE"])
    assert "not audio methods" in capsys.readouterr().err


def _curve(points):
    return [{"seconds": s, "knn": a, "linear": a} for s, a in points]


FLAT_END = [  # the baseline reaches its final accuracy at 20 s and stays there
    {"method": "MAE", "steps": 40, "examples_per_s": 1.0,
     "curve": _curve([(0, 0.1), (10, 0.3), (20, 0.5), (40, 0.5)])},
    {"method": "data2vec 2.0", "steps": 40, "examples_per_s": 1.0,
     "curve": _curve([(0, 0.1), (10, 0.5), (20, 0.6), (40, 0.7)])},
]


def test_speed_up_is_against_the_baselines_own_first_arrival():
    gains = {(g["metric"], g["method"]): g for g in load_bench().speedups(FLAT_END, "MAE")}
    assert gains["knn", "MAE"]["seconds"] == 20 and gains["knn", "MAE"]["speedup"] == 1.0
    assert gains["linear", "data2vec 2.0"]["seconds"] == 10 and gains["linear", "data2vec 2.0"]["speedup"] == 2.0


def test_render_rewrites_table_and_plot_from_saved_results(tmp_path):
    bench = load_bench()
    (tmp_path / "results.json").write_text(json.dumps({"args": {"seconds": "40"}, "results": FLAT_END,
                                                       "speedups": []}))
    bench.main(["--render", str(tmp_path)])
    table = (tmp_path / "table.md").read_text()
    assert "| linear (50.0%) | data2vec 2.0 | 10 s | 2.0x |" in table
    assert "| knn (50.0%) | MAE | 20 s | 1.0x |" in table
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["args"] == {"seconds": "40"} and saved["results"] == FLAT_END
    assert (tmp_path / "time_to_accuracy.png").stat().st_size > 0
