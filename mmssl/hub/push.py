"""Push an export (or a run, exported on the fly) to the Hugging Face Hub in one commit.

The token comes from ``HF_TOKEN`` or huggingface_hub's login cache and is handed to
``HfApi`` only: it is never printed, logged or written. ``HF_ENDPOINT`` is read at call
time (huggingface_hub reads it once at import) so a private Hub or a test server works.
The files go up with one ``create_commit`` rather than ``upload_folder``, which may split
a folder into several commits: a model repo never shows a half-uploaded model.

Only an mmssl export (it holds ``mmssl_recipe.yaml``) or a run (``recipe.yaml``, exported
on the fly) is pushed, and only its own files: regular files inside the folder, no hidden
file or folder (``.env``, ``.git``, ``.cache``) and no symbolic link, which could point
anywhere on the machine.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import httpx2
from huggingface_hub import CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError

from mmssl.errors import HubError
from mmssl.hub.export import RECIPE_FILE, export


def require_token(token: str | None = None) -> str:
    """The explicit token, else ``HF_TOKEN`` or the login cache; a clear error when none."""
    token = token or get_token()
    if not token:
        raise HubError(
            "no Hugging Face token: set the HF_TOKEN environment variable or log in once "
            "with `hf auth login`"
        )
    return token


def export_files(folder: Path) -> list[Path]:
    """The export's own files: regular, not hidden, not links (nor under a linked folder)."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(root, d)))
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and not path.is_symlink() and path.is_file():
                found.append(path)
    return found


def _operations(folder: Path) -> list[CommitOperationAdd]:
    return [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
            for p in export_files(folder)]


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
    if not (folder / RECIPE_FILE).is_file() or (folder / RECIPE_FILE).is_symlink():
        raise HubError(
            f"{folder} is neither an mmssl export (no {RECIPE_FILE}) nor a run (no recipe.yaml): "
            "push a run directory, or a folder written by `mmssl export RUN OUT`"
        )
    token = require_token(token)
    endpoint = os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=endpoint, token=token)
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
    except (httpx2.TransportError, ConnectionError) as err:
        raise HubError(
            f"cannot reach the Hub at {endpoint or 'https://huggingface.co'} "
            f"({type(err).__name__}: {str(err).replace(token, '***')}): check the network "
            "connection, a proxy, or HF_ENDPOINT; nothing was pushed"
        ) from None
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
