"""Push against a local fake Hub: one commit with the export, and the token kept secret."""

from __future__ import annotations

import json
import logging

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
