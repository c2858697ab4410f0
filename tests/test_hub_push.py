"""Push against a local fake Hub: one commit with the export, and the token kept secret."""

from __future__ import annotations

import json
import logging
import socket

import pytest
import yaml
from hub_helpers import TINY_MAE, FakeHub, train_tiny_mae
from huggingface_hub import constants

from mmssl.cli import main

TOKEN = "hf_testSecretToken0123456789"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny_mae(tmp_path_factory.mktemp("hub-push") / "run")


@pytest.fixture
def hub(monkeypatch):
    """A fake Hub at HF_ENDPOINT; huggingface_hub's own side requests (it fetches an agent
    registry from the ENDPOINT it read at import) are pointed at it too, so no test leaves
    127.0.0.1."""
    with FakeHub(TOKEN) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        monkeypatch.setattr(constants, "ENDPOINT", fake.endpoint)
        yield fake


@pytest.fixture
def no_login_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-stored-tokens"))


def _all_text(paths) -> bytes:
    return b"".join(p.read_bytes() for root in paths for p in root.rglob("*") if p.is_file())


def test_push_run_is_one_commit_with_the_export_and_never_leaks_the_token(
    run_dir, hub, monkeypatch, capsys, caplog
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    code = main(["push", str(run_dir), "--repo-id", "someone/mae-digits", "--private",
                 "--commit-message", "first upload"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "huggingface.co" not in caplog.text  # HF_ENDPOINT honoured
    assert ("POST", "/api/repos/create") in hub.calls
    created = json.loads(hub.bodies[[c for c in hub.calls if c[0] == "POST"].index(("POST", "/api/repos/create"))])
    assert (created["organization"], created["name"], created["visibility"]) == ("someone", "mae-digits", "private")
    commits = [call for call in hub.calls if "/commit/" in call[1]]
    assert commits == [("POST", "/api/models/someone/mae-digits/commit/main")]
    (commit,) = hub.commits
    assert commit["summary"] == "first upload"
    assert {"README.md", "config.json", "model.safetensors", "preprocessor_config.json",
            "mmssl_recipe.yaml", "encoder/config.json", "encoder/model.safetensors",
            "encoder/preprocessor_config.json"} <= set(commit["files"])
    assert commit["files"]["README.md"].startswith(b"---\n")
    secret = TOKEN.encode()
    assert secret not in b"".join(commit["files"].values())
    assert not any(secret in body for body in hub.bodies)
    assert TOKEN not in out.out + out.err + caplog.text
    assert secret not in _all_text([run_dir])


def test_push_to_a_branch_creates_it_first(run_dir, hub, tmp_path, monkeypatch):
    assert main(["export", str(run_dir), str(tmp_path / "export")]) == 0
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["push", str(tmp_path / "export"), "--repo-id", "someone/m", "--revision", "v1"]) == 0
    posts = [path for _, path in hub.calls]
    assert posts.index("/api/models/someone/m/branch/v1") < posts.index("/api/models/someone/m/commit/v1")
    assert len(hub.commits) == 1


def test_missing_token_is_a_clear_error_before_any_request(run_dir, hub, no_login_cache, capsys):
    assert main(["push", str(run_dir), "--repo-id", "someone/m"]) == 2
    err = capsys.readouterr().err
    assert "no Hugging Face token" in err and "HF_TOKEN" in err
    assert hub.calls == []


def test_rejected_token_is_a_clear_error_without_the_token(run_dir, hub, tmp_path, monkeypatch, capsys):
    assert main(["export", str(run_dir), str(tmp_path / "export")]) == 0
    wrong = "hf_wrongToken9876543210"
    monkeypatch.setenv("HF_TOKEN", wrong)
    assert main(["push", str(tmp_path / "export"), "--repo-id", "someone/m"]) == 2
    err = capsys.readouterr().err
    assert "rejected the token (HTTP 401)" in err
    assert wrong not in err
    assert hub.commits == []


def test_recipe_without_repo_id_fails_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_MAE, "output_dir": str(tmp_path / "run"),
                                      "hub": {"push": True}}))
    assert main(["pretrain", str(recipe)]) == 2
    assert "hub.repo_id" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_recipe_hub_section_pushes_after_pretraining(hub, tmp_path, monkeypatch):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_MAE, "output_dir": str(tmp_path / "run"),
                                      "hub": {"push": True, "repo_id": "someone/from-recipe"}}))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["pretrain", str(recipe)]) == 0
    (commit,) = hub.commits
    assert commit["path"] == "/api/models/someone/from-recipe/commit/main"
    assert b"someone/from-recipe" in commit["files"]["README.md"]
    assert TOKEN.encode() not in _all_text([tmp_path / "run"])


def test_push_uploads_only_the_exports_own_files(run_dir, hub, tmp_path, monkeypatch):
    export_dir = tmp_path / "export"
    assert main(["export", str(run_dir), str(export_dir)]) == 0
    exported = {p.relative_to(export_dir).as_posix() for p in export_dir.rglob("*") if p.is_file()}
    secret = tmp_path / "outside.txt"
    secret.write_text("private notes")
    (tmp_path / "outside_dir").mkdir()
    (tmp_path / "outside_dir" / "key.pem").write_text("KEY")
    (export_dir / ".env").write_text("HF_TOKEN=hf_leak")
    (export_dir / ".git").mkdir()
    (export_dir / ".git" / "config").write_text("[core]")
    (export_dir / "notes.txt").symlink_to(secret)
    (export_dir / "linked").symlink_to(tmp_path / "outside_dir", target_is_directory=True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["push", str(export_dir), "--repo-id", "someone/m"]) == 0
    (commit,) = hub.commits
    assert set(commit["files"]) == exported
    assert not any(b"private notes" in c or b"KEY" == c or b"hf_leak" in c for c in commit["files"].values())


def test_push_refuses_a_folder_that_is_neither_an_export_nor_a_run(hub, tmp_path, monkeypatch, capsys):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "id_rsa").write_text("secret")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["push", str(tmp_path), "--repo-id", "someone/m"]) == 2
    err = capsys.readouterr().err
    assert "neither an mmssl export (no mmssl_recipe.yaml) nor a run" in err
    assert len(err.strip().splitlines()) == 1
    assert hub.calls == []


def test_an_unreachable_hub_is_one_line_without_the_token(run_dir, tmp_path, monkeypatch, capsys):
    with socket.socket() as closed:  # a port that was free a moment ago: nothing listens there
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["push", str(run_dir), "--repo-id", "someone/m"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the Hub at http://127.0.0.1:{port} (ConnectError" in err
    (line,) = [line for line in err.splitlines() if line.startswith("mmssl push: error:")]
    assert "nothing was pushed" in line and "Traceback" not in err
    assert TOKEN not in err


def test_the_token_of_a_real_push_reaches_no_file_log_or_output(hub, tmp_path, monkeypatch, capsys, caplog):
    """Pretrain, export and push with HF_TOKEN set: the token goes to the Hub (the fake Hub
    checks the Authorization header) and nowhere else."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", TOKEN)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_MAE, "output_dir": str(tmp_path / "run"),
                                      "hub": {"push": True, "repo_id": "someone/secret-test"}}))
    assert main(["pretrain", str(recipe)]) == 0
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "export")]) == 0
    assert main(["push", str(tmp_path / "export"), "--repo-id", "someone/secret-test"]) == 0
    assert len(hub.commits) == 2 and all(c["files"] for c in hub.commits)  # both pushes went through
    printed = capsys.readouterr()
    assert TOKEN not in printed.out + printed.err + caplog.text
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != recipe]
    assert len(files) > 10
    for path in files:
        assert TOKEN.encode() not in path.read_bytes(), path
    for commit in hub.commits:
        assert not any(TOKEN.encode() in content for content in commit["files"].values())
