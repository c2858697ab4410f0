"""``mmssl push RUN_DIR|EXPORT_DIR --repo-id user/name``: upload to the Hugging Face Hub."""

from __future__ import annotations

import argparse

from mmssl import api

HELP = "push a run (exported on the fly) or an export folder to the Hugging Face Hub in one commit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="an mmssl run directory or a folder written by `mmssl export`")
    parser.add_argument("--repo-id", required=True, help="the Hub repository, NAMESPACE/NAME")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", default=None, help="the branch to commit to (created if needed)")
    parser.add_argument("--commit-message", default=None, help="the commit message")


def run(args: argparse.Namespace) -> int:
    url = api.push(args.source, args.repo_id, private=args.private, revision=args.revision,
                   commit_message=args.commit_message).url
    print(f"Pushed {args.source} to {args.repo_id}: {url}")
    return 0
