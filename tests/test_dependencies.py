"""Every third-party package mmssl imports is declared in setup.cfg and pinned in constraints.txt.

A package that only arrives through another one (numpy via torch, httpx2 via
huggingface_hub) breaks the day that one drops it or when an older allowed version never had it.
"""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_distributions() -> dict[str, str]:
    """Distribution name -> a module of mmssl that imports it."""
    dists = packages_distributions()
    found: dict[str, str] = {}
    for path in sorted((ROOT / "mmssl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "mmssl" or top == "__future__":
                    continue
                for dist in dists.get(top, [top]):
                    found.setdefault(normalize(dist), str(path.relative_to(ROOT)))
    return found


def declared_requirements() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].split("\n")
    return {normalize(re.split(r"[<>=!~;\[ ]", line.strip())[0]) for line in lines if line.strip()}


def pinned_versions() -> set[str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return {normalize(line.split("==")[0]) for line in lines if "==" in line}


def test_every_imported_package_is_declared_and_pinned():
    imported = imported_distributions()
    assert "torch" in imported and "transformers" in imported  # the scan sees the imports
    declared, pinned = declared_requirements(), pinned_versions()
    undeclared = {dist: module for dist, module in imported.items() if dist not in declared}
    assert not undeclared, f"imported but not in setup.cfg install_requires: {undeclared}"
    assert not declared - pinned, f"not pinned in constraints.txt: {declared - pinned}"
