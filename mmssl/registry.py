"""One registry type for everything that is chosen by name in a recipe.

Tasks, backbones, data sources and heads each get a :class:`Registry`; modules register
their entries at import time with a decorator, and ``mmssl list`` prints them all.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


class RegistryError(KeyError):
    """An unknown name was asked for; the message lists what exists."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    config: type | None
    help: str


class Registry:
    """A name -> object map with a decorator to fill it and helpful misses."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, *, config: type | None = None, help: str = ""
    ) -> Callable[[Any], Any]:
        """Decorator: ``@TASKS.register("mae", config=MAEConfig)``."""

        def add(obj: Any) -> Any:
            if name in self._entries and self._entries[name].obj is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            first_line = (obj.__doc__ or "").strip().split("\n")[0]
            self._entries[name] = Entry(name, obj, config, help or first_line)
            return obj

        return add

    def get(self, name: str) -> Entry:
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(self._entries)) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}{hint} (known: {known})")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return sorted(self._entries)


TASKS = Registry("task")
BACKBONES = Registry("backbone")
DATA_SOURCES = Registry("data source")
HEADS = Registry("head")

ALL: dict[str, Registry] = {
    "tasks": TASKS,
    "backbones": BACKBONES,
    "data sources": DATA_SOURCES,
    "heads": HEADS,
}


def load_all() -> None:
    """Import every module that registers entries, so the registries are complete."""
    import importlib
    import pkgutil

    for pkg in ("tasks", "modalities", "data", "heads"):
        module = importlib.import_module(f"mmssl.{pkg}")
        for info in pkgutil.iter_modules(module.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"mmssl.{pkg}.{info.name}")
