"""``mmssl list``: what the registries hold."""

from __future__ import annotations

import argparse

from mmssl.registry import ALL, load_all

HELP = "list the registered tasks, backbones, data sources and heads"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", choices=sorted(ALL), help="show only this registry")


def run(args: argparse.Namespace) -> int:
    load_all()
    for kind, registry in ALL.items():
        if args.kind and kind != args.kind:
            continue
        print(f"{kind}:")
        for entry in registry:
            print(f"  {entry.name:<16} {entry.help}")
    return 0
