"""``mmssl export RUN_DIR OUT_DIR``: a transformers-format folder with a model card."""

from __future__ import annotations

import argparse

from mmssl import api

HELP = "export a run to a folder that transformers loads (model, encoder/, processor, model card)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="an mmssl run directory")
    parser.add_argument("out_dir", help="the folder to write (must be empty or absent)")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint folder (default: the latest)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier mmssl export at OUT_DIR (no other folder)"
    )


def run(args: argparse.Namespace) -> int:
    out = api.export(args.run_dir, args.out_dir, checkpoint=args.checkpoint, overwrite=args.overwrite).out_dir
    print(f"Exported {args.run_dir} to {out}")
    print(f"  load it with: AutoModel.from_pretrained({str(out)!r}, subfolder='encoder')")
    return 0
