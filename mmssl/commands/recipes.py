"""``mmssl recipes`` lists the recipes that ship with mmssl; ``mmssl recipes copy NAME DEST``
copies one to edit (like torchtune's ``tune ls`` / ``tune cp``). A shipped recipe also runs
by name: ``mmssl pretrain quickstart``."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from mmssl.recipe import shipped_recipes
from mmssl.registry import RegistryError

HELP = "list the recipes shipped with mmssl, or copy one to edit (mmssl recipes copy NAME DEST)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    copy = sub.add_parser("copy", help="copy a shipped recipe to a file or folder", description=HELP)
    copy.add_argument("name", help="a recipe name from `mmssl recipes` (e.g. quickstart)")
    copy.add_argument("dest", help="the file to write, or a folder to write NAME.yaml into")
    copy.add_argument("--overwrite", action="store_true", help="replace an existing file")


def summary(path: Path) -> str:
    """The first sentence of a recipe's header comment."""
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#") or not line.strip("# "):
            break
        header.append(line.strip("# "))
    sentence = " ".join(header).split(". ")[0]
    return sentence if sentence.endswith(".") or not sentence else sentence + "."


def copy_recipe(name: str, dest: str | Path, overwrite: bool = False) -> Path:
    """Copy the shipped recipe ``name`` to ``dest`` (a file, or a folder for NAME.yaml)."""
    recipes = shipped_recipes()
    if name not in recipes:
        raise RegistryError(f"unknown recipe {name!r} (shipped: {', '.join(recipes)})")
    target = Path(dest)
    if target.is_dir():
        target = target / f"{name}.yaml"
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists: choose another name or pass --overwrite")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(recipes[name], target)
    return target


def run(args: argparse.Namespace) -> int:
    if args.action == "copy":
        target = copy_recipe(args.name, args.dest, args.overwrite)
        print(f"Copied {args.name} to {target}; run it with: mmssl pretrain {target}")
        return 0
    for name, path in shipped_recipes().items():
        print(f"  {name:<26} {summary(path)}")
    print("Copy one to edit: mmssl recipes copy NAME DEST; or run it as is: mmssl pretrain NAME")
    return 0
