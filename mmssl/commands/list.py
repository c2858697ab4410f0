"""``mmssl list [KIND]``: what the registries hold: their index (no torch import) and what
installed plugins (``mmssl.plugins`` entry points) register."""

from __future__ import annotations

import argparse

from mmssl.registry import ALL

HELP = "list the registered tasks, backbones, data sources and heads"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", choices=list(ALL), help="show only this registry")


def run(args: argparse.Namespace) -> int:
    for kind, registry in ALL.items():
        if args.kind and kind != args.kind:
            continue
        print(f"{registry.plural}:")
        for entry in registry:
            tasks = entry.facts.get("tasks")
            print(f"  {entry.name:<16} {entry.help}" + (f" [tasks: {', '.join(tasks)}]" if tasks else ""))
    return 0
