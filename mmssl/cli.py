"""The ``mmssl`` command. Each subcommand is a module in ``mmssl.commands`` with
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.

Start-up stays fast: this module and the command modules import no torch, transformers or
datasets at module level; each ``run`` imports what its work needs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import warnings
from pathlib import Path

import mmssl
import mmssl.commands
from mmssl.errors import (
    BadExampleError,
    CheckpointError,
    DataError,
    HubError,
    RunLockedError,
    TrainingDivergedError,
)
from mmssl.recipe import RecipeError
from mmssl.registry import RegistryError

#: errors that are the user's to fix: printed as one clear line, no traceback.
USER_ERRORS = (
    RecipeError,
    DataError,
    RegistryError,
    BadExampleError,
    CheckpointError,
    RunLockedError,
    TrainingDivergedError,
    FileNotFoundError,
    FileExistsError,
    HubError,
    ValueError,
)


_PACKAGE = str(Path(mmssl.__file__).parent)
_PYTHON_FORMAT = warnings.formatwarning


def format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                   line: str | None = None) -> str:
    """mmssl's own warnings (settings that do not do what they say, skipped plugins) read as
    one line, as its errors do; other packages' keep Python's format with their source line."""
    if str(filename).startswith(_PACKAGE):
        return f"mmssl: warning: {message}\n"
    return _PYTHON_FORMAT(message, category, filename, lineno, line)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmssl", description="Self-supervised pretraining for images, text and audio."
    )
    parser.add_argument("--version", action="version", version=f"mmssl {mmssl.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(mmssl.commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"mmssl.commands.{info.name}")
        command = sub.add_parser(info.name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = format_warning
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may also come after options (``--resume CKPT train.lr=1e-4``)
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.handler(args)
    except USER_ERRORS as err:
        print(f"mmssl {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mmssl {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``mmssl recipes | head``): stop quietly, as a Unix tool does;
        # stdout goes to /dev/null so the interpreter's final flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
