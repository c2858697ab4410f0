"""The docs show what ships: the README lists every shipped recipe, its annotated recipe is the shipped quickstart, and
docs/api.md's example runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mmssl.recipe import shipped_recipes

ROOT = Path(__file__).resolve().parents[1]


def code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), re.S)


def test_readme_recipe_table_lists_every_shipped_recipe():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Recipes"):].split("\n## ")[0]
    listed = set()
    for cell in re.findall(r"`recipes/([^`]+)\.yaml`", table):
        head, _, rest = cell.partition("{")
        options, _, tail = rest.partition("}")
        listed |= {head + option + tail for option in options.split(",")} if rest else {cell}
    assert set(shipped_recipes()) - listed == set()


def test_readme_recipe_is_the_shipped_quickstart():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## A recipe, explained"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    assert block == (ROOT / "recipes" / "quickstart.yaml").read_text()


@pytest.mark.slow
def test_api_example_runs_as_written(tmp_path):
    blocks = code_blocks(ROOT / "docs" / "api.md", "python")
    script = "\n".join(blocks[:2])  # pretrain/evaluate/export, then load with transformers
    script += "\nprint('encoder', type(model).__name__)\n"
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "parameters" in out.stdout and "runs/api-example 20 loss" in out.stdout
    assert "knn" in out.stdout.lower()
    assert (tmp_path / "exports" / "api-example" / "encoder" / "config.json").is_file()
    assert out.stdout.strip().endswith("encoder ViTModel")
