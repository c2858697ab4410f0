"""What a ``--data`` argument names, as a recipe ``data:`` mapping.

``mmssl eval --data`` (and ``mmssl.evaluate(data=...)``) accept any of:

- a mapping like a recipe's ``data:`` section, as YAML/JSON text (``{source: hub, path:
  user/pets}``) or a ``.yaml`` file (a whole recipe's ``data:`` section is used);
- a folder: ``<split>.parquet`` files, else images (``imagefolder``), recordings
  (``audiofolder``) or ``.txt`` files (``text``), told apart by the files' endings;
- a ``.parquet``/``.csv``/``.json``/``.jsonl``/``.txt`` file (its rows are the ``train`` split);
- a Hub dataset id (``user/name``);
- ``key=value`` overrides of the result (``split=validation``, ``columns.image=img``).

Where the data is (source, path, name, data_files) comes from the argument; how it is read
(columns, bad-example policy, image/text/audio settings) stays the run's unless overridden.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mmssl.errors import DataError
from mmssl.recipe import parse_override

LOCATION_KEYS = ("source", "path", "name", "data_files")
FILE_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json", ".txt": "text"}
FOLDER_BUILDERS = {
    **dict.fromkeys((".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"), "imagefolder"),
    **dict.fromkeys((".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus"), "audiofolder"),
    ".txt": "text",
}
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def data_mapping(spec: str | Path | Mapping[str, Any] | Sequence[str], base: Mapping[str, Any]) -> dict[str, Any]:
    """The ``data:`` mapping that ``spec`` (one argument, a mapping, or several arguments
    applied in order) stands for, on top of ``base``, the run's data section."""
    specs = [spec] if isinstance(spec, (str, Path, Mapping)) else list(spec)
    data = dict(base)
    for item in specs:
        if isinstance(item, str) and _OVERRIDE.match(item):
            key, value = parse_override(item)
            _set(data, key.split("."), value)
        else:
            location = dict(item) if isinstance(item, Mapping) else _location(str(item))
            data = {**{k: v for k, v in data.items() if k not in LOCATION_KEYS}, **location}
    return data


def _set(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        child = tree.get(key)
        tree[key] = child = dict(child) if isinstance(child, Mapping) else {}
        tree = child
    tree[keys[-1]] = value


def _location(spec: str) -> dict[str, Any]:
    path = Path(spec)
    if spec.lstrip().startswith("{"):
        return _mapping(yaml.safe_load(spec), spec)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise DataError(f"--data {spec}: no such file")
        tree = yaml.safe_load(path.read_text())
        return _mapping(tree.get("data", tree) if isinstance(tree, dict) else tree, spec)
    if path.is_dir():
        return _folder(path)
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise DataError(f"--data {spec}: cannot tell the format (known endings: {', '.join(FILE_BUILDERS)})")
        return {"source": builder, "data_files": {"train": spec}}
    if _HUB_ID.match(spec) and not spec.startswith("."):
        return {"source": "hub", "path": spec}
    raise DataError(f"--data {spec}: not a data mapping, folder, file or Hub dataset id")


def _mapping(tree: Any, spec: str) -> dict[str, Any]:
    if not isinstance(tree, dict):
        raise DataError(f"--data {spec}: expected a mapping like a recipe's data: section")
    return tree


def _folder(path: Path) -> dict[str, Any]:
    parquet = sorted(path.glob("*.parquet"))
    if parquet:
        return {"source": "parquet", "data_files": {p.stem: str(p) for p in parquet}}
    endings = {p.suffix.lower() for p in _files(path)}
    kinds = {FOLDER_BUILDERS[e] for e in endings if e in FOLDER_BUILDERS}
    if len(kinds) != 1:
        found = ", ".join(sorted(endings)) or "no files"
        raise DataError(
            f"--data {path}: cannot tell images, recordings or texts apart ({found}); "
            "pass a mapping such as {source: imagefolder, path: DIR}"
        )
    return {"source": kinds.pop(), "path": str(path)}


def _files(path: Path, limit: int = 1000) -> list[Path]:
    """Up to ``limit`` files under ``path`` (enough to tell what kind of folder it is)."""
    found = []
    for item in path.rglob("*"):
        if item.is_file() and not item.name.startswith("."):
            found.append(item)
            if len(found) >= limit:
                break
    return found
