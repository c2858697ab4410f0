"""Push an export (or a run, exported on the fly) to the Hugging Face Hub in one commit.

The token comes from ``HF_TOKEN`` or huggingface_hub's login cache and is handed to
``HfApi`` only: it is never printed, logged or written. ``HF_ENDPOINT`` is read at call
time (huggingface_hub reads it once at import) so a private Hub or a test server works.
The files go up with one ``create_commit`` rather than ``upload_folder``, which may split
a folder into several commits: a model repo never shows a half-uploaded model.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError

from mmssl.errors import HubError
from mmssl.hub.export import export


def require_token(token: str | None = None) -> str:
    """The explicit token, else ``HF_TOKEN`` or the login cache; a clear error when none."""
    token = token or get_token()
    if not token:
        raise HubError(
            "no Hugging Face token: set the HF_TOKEN environment variable or log in once "
            "with `hf auth login`"
        )
    return token


def _operations(folder: Path) -> list[CommitOperationAdd]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
            for p in files]


def _http_error(err: HfHubHTTPError, repo_id: str, token: str) -> HubError:
    status = err.response.status_code if err.response is not None else None
    if status == 401:
        message = f"the Hub rejected the token (HTTP 401) for {repo_id}: log in again or set a valid HF_TOKEN"
    elif status == 403:
        message = f"the token may not write to {repo_id} (HTTP 403): use a token with write access"
    else:
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        message = f"pushing to {repo_id} failed: {first_line}"
    return HubError(message.replace(token, "***"))


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Create ``repo_id`` if needed and commit every file of ``folder``; returns the commit URL."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no config.json (export a run with `mmssl export` first)")
    token = require_token(token)
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.create_commit(
            repo_id,
            operations=_operations(folder),
            commit_message=commit_message or f"Upload {folder.name} with mmssl",
            revision=revision,
        )
    except HfHubHTTPError as err:
        raise _http_error(err, repo_id, token) from None
    return str(info.commit_url)


def push(
    source: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Push an export folder, or a run directory exported to a temporary folder first."""
    source = Path(source)
    if not repo_id or "/" not in repo_id:
        raise HubError(f"repo id {repo_id!r}: expected NAMESPACE/NAME, e.g. your-user/mae-cifar10")
    kwargs = dict(private=private, revision=revision, commit_message=commit_message, token=token)
    if (source / "recipe.yaml").is_file():
        require_token(token)
        with tempfile.TemporaryDirectory(prefix="mmssl-export-") as tmp:
            folder = export(source, Path(tmp) / "export")
            return push_folder(folder, repo_id, **kwargs)
    return push_folder(source, repo_id, **kwargs)
