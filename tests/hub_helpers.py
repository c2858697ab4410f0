"""Shared by the tests/test_hub_*.py files: a tiny trained MAE run and a recording fake Hub."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from test_mae import TINY

from mmssl.recipe import recipe_from_dict

#: test_mae's tiny MAE, trained for three logged steps on the CPU.
TINY_MAE = {
    **TINY,
    "name": "mae-hub-test",
    "train": {"batch_size": 8, "max_steps": 3, "cpu": True, "progress": False, "log_every": 1,
              "warmup_steps": 0, "lr": 1.0e-3},
}


def train_tiny_mae(run_dir: Path, **sections: Any) -> Path:
    """Pretrain the tiny MAE for three steps into ``run_dir``."""
    from mmssl.train.loop import pretrain

    recipe = recipe_from_dict({**TINY_MAE, **sections, "output_dir": str(run_dir)})
    return pretrain(recipe).run_dir


class FakeHub:
    """The Hub endpoints huggingface_hub 2.4's create_repo/create_branch/create_commit call,
    and file downloads (``resolve``) of what was committed.

    Every request is recorded (method, path); commits keep their files decoded. Preupload
    answers "regular" for every file, so contents travel inline.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[tuple[str, str]] = []
        self.commits: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def reply(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def committed_file(self) -> bytes | None:
                """``/{namespace}/{name}/resolve/{revision}/{path}``: the last commit's copy."""
                parts = self.path.split("?")[0].split("/")
                if len(parts) < 6 or parts[3] != "resolve":
                    return None
                repo, name = "/".join(parts[1:3]), "/".join(parts[5:])
                for commit in reversed(hub.commits):
                    if commit["path"].startswith(f"/api/models/{repo}/commit/") and name in commit["files"]:
                        return commit["files"][name]
                return None

            def send_file(self, with_body: bool) -> None:
                hub.calls.append(("GET" if with_body else "HEAD", self.path.split("?")[0]))
                content = self.committed_file()
                if content is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", "a" * 40)
                self.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if with_body:
                    self.wfile.write(content)

            def do_HEAD(self) -> None:
                self.send_file(with_body=False)

            def do_GET(self) -> None:
                self.send_file(with_body=True)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.calls.append(("POST", self.path.split("?")[0]))
                hub.bodies.append(body)
                if self.headers.get("Authorization") != f"Bearer {hub.token}":
                    return self.reply(401, {"error": "Invalid credentials in Authorization header"})
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    data = json.loads(body)
                    repo = f"{data.get('organization')}/{data['name']}"
                    return self.reply(200, {"url": f"http://{self.headers['Host']}/{repo}"})
                if path == "/api/validate-yaml":
                    return self.reply(200, {"errors": [], "warnings": []})
                if "/preupload/" in path:
                    files = json.loads(body)["files"]
                    return self.reply(200, {"files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                        for f in files]})
                if "/branch/" in path:
                    return self.reply(200, {})
                if "/commit/" in path:
                    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                    header = next(item["value"] for item in lines if item["key"] == "header")
                    files = {item["value"]["path"]: base64.b64decode(item["value"]["content"])
                             for item in lines if item["key"] == "file"}
                    hub.commits.append({"path": path, "summary": header["summary"], "files": files})
                    repo = path.split("/commit/")[0].removeprefix("/api/models/")
                    url = f"http://{self.headers['Host']}/{repo}/commit/{'a' * 40}"
                    return self.reply(200, {"commitUrl": url,
                                            "commitOid": "a" * 40, "pullRequestUrl": None})
                return self.reply(404, {"error": f"no such endpoint {path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
