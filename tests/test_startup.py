"""Start-up: ``--help``, ``list``, recipe errors and ``import mmssl`` never import torch,
transformers or datasets (the commands answer at once; see docs/benchmarks.md for times)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets", "accelerate")

# runs the CLI in-process, then reports which heavy modules it imported
_PROBE = """
import sys
from mmssl.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY:", ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def run_probe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args], cwd=ROOT,
                          capture_output=True, text=True)


def heavy_imports(result: subprocess.CompletedProcess) -> str:
    line = [x for x in result.stderr.splitlines() if x.startswith("HEAVY:")][-1]
    return line.removeprefix("HEAVY:").strip()


@pytest.mark.parametrize("args", [
    ("--help",),
    ("pretrain", "--help"),
    ("list",),
    ("list", "data"),
    ("recipes",),
])
def test_help_and_listings_import_no_torch(args):
    result = run_probe(*args)
    assert result.returncode == 0, result.stderr
    assert heavy_imports(result) == ""


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "train.lrr: unknown key; did you mean 'lr'?"),
    ("task.mask_ratoi=0.5", "task.mask_ratoi: unknown key; did you mean 'mask_ratio'?"),
    ("task.name=maee", "did you mean 'mae'?"),
])
def test_recipe_errors_import_no_torch(override, message):
    result = run_probe("pretrain", "recipes/quickstart.yaml", override)
    assert result.returncode == 2
    assert message in result.stderr
    assert heavy_imports(result) == ""


def test_every_task_config_validates_without_torch():
    code = ("import sys; from mmssl.registry import TASKS\n"
            "[TASKS.config_class(n)() if n != 'clip' else TASKS.config_class(n) for n in TASKS.names()]\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_import_mmssl_is_cheap_and_the_api_loads_lazily():
    code = ("import sys, mmssl\n"
            f"before = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "r = mmssl.load_recipe('recipes/quickstart.yaml', {'train.lr': 0.001})\n"
            f"after = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "print(before, after, r.train.lr, callable(mmssl.pretrain))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "[]", "0.001", "True"]


def test_python_dash_m_mmssl_is_the_cli():
    out = subprocess.run([sys.executable, "-m", "mmssl", "--version"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("mmssl ")
