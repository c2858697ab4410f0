"""Installed packages extend mmssl through the ``mmssl.plugins`` entry-point group: a
recipe names the plugin's modality and backbone and ``mmssl pretrain`` finds them without
the user importing anything; a broken plugin is a warning and a counted skip; recipes that
use only built-in names never import plugins.

Each test installs a plugin the way pip leaves one: a module plus a ``.dist-info`` folder
with ``entry_points.txt``, on ``sys.path``."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from datasets import Dataset
from PIL import Image

from mmssl import registry
from mmssl.cli import main
from mmssl.registry import BACKBONES, MODALITIES, TASKS, Plugins, RegistryError

GRAY_PLUGIN = '''
"""A plugin: a one-channel vision modality and a ViT backbone that serves it."""
import dataclasses

from mmssl.backbones.base import register
from mmssl.backbones.vit import VIT
from mmssl.modalities.base import register as register_modality
from mmssl.modalities.vision import VisionModality

register(dataclasses.replace(VIT, name="gray_vit", modality="gray", tasks=("simclr",)), __name__,
         help="ViT on one grey channel.")


@register_modality
class GrayModality(VisionModality):
    """Images read as one grey channel."""

    name = "gray"
    default_backbone = "gray_vit"
'''


def _install(folder: Path, name: str, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put module ``name`` and its distribution's metadata (one ``mmssl.plugins`` entry) on sys.path."""
    (folder / f"{name}.py").write_text(source)
    info = folder / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[mmssl.plugins]\n{name} = {name}\n")
    monkeypatch.syspath_prepend(str(folder))


@pytest.fixture
def fresh_plugins(monkeypatch):
    """Plugins not yet scanned; whatever a test's plugin registers is removed afterwards."""
    monkeypatch.setattr(registry, "PLUGINS", Plugins())
    yield
    MODALITIES.unregister("gray")
    BACKBONES.unregister("gray_vit")
    for name in ("gray_plugin", "broken_plugin"):
        sys.modules.pop(name, None)


def _images(path: Path) -> str:
    rng = np.random.default_rng(0)
    cells = []
    for _ in range(32):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buffer, format="PNG")
        cells.append({"bytes": buffer.getvalue(), "path": None})
    Dataset.from_dict({"image": cells}).to_parquet(str(path))
    return str(path)


def test_a_recipe_uses_an_installed_plugins_modality_and_backbone(fresh_plugins, tmp_path, monkeypatch, capsys):
    _install(tmp_path, "gray_plugin", GRAY_PLUGIN, monkeypatch)
    run = tmp_path / "run"
    recipe = {
        "name": "gray", "output_dir": str(run), "seed": 0,
        "task": {"name": "simclr", "modality": "gray", "projection_dim": 16, "projection_hidden_dim": 32},
        "model": {"backbone": "gray_vit", "config": {"patch_size": 4, "num_hidden_layers": 1}},
        "data": {"source": "parquet", "data_files": {"train": _images(tmp_path / "train.parquet")},
                 "image": {"size": 16, "channels": 1, "mean": [0.5], "std": [0.5]}},
        "train": {"batch_size": 8, "max_steps": 3, "save_every": 3, "log_every": 1, "progress": False,
                  "warmup_steps": 0, "epochs": None},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert "gray_plugin" not in sys.modules
    assert main(["pretrain", str(path)]) == 0
    assert registry.PLUGINS.loaded == ["gray_plugin"] and not registry.PLUGINS.failed
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 3 and all(np.isfinite(losses))
    capsys.readouterr()
    assert main(["list", "modalities"]) == 0
    assert "  gray             Images read as one grey channel." in capsys.readouterr().out
    assert main(["list", "backbones"]) == 0
    assert "  gray_vit         ViT on one grey channel. [tasks: simclr]" in capsys.readouterr().out


def test_a_broken_plugin_is_a_warning_and_a_counted_skip(fresh_plugins, tmp_path, monkeypatch):
    _install(tmp_path, "broken_plugin", "raise ImportError('needs scipy>=9')\n", monkeypatch)
    with pytest.warns(UserWarning, match=r"^plugin 'broken_plugin' \(broken_plugin\) skipped: "
                                         r"ImportError: needs scipy>=9"):
        names = MODALITIES.names()
    assert names == ["audio", "text", "vision"]
    assert registry.PLUGINS.failed == {"broken_plugin": "ImportError: needs scipy>=9"}
    with pytest.raises(RegistryError, match=r"^unknown modality 'gray' \(known: audio, text, vision\)$"):
        MODALITIES.get("gray")


def test_built_in_names_never_load_plugins(fresh_plugins, tmp_path, monkeypatch):
    _install(tmp_path, "gray_plugin", GRAY_PLUGIN, monkeypatch)
    assert "vision" in MODALITIES and TASKS.get("simclr").name == "simclr"
    assert BACKBONES.describe("vit").facts["modality"] == "vision"
    assert not registry.PLUGINS.scanned and "gray_plugin" not in sys.modules
    assert "gray" in MODALITIES and registry.PLUGINS.loaded == ["gray_plugin"]


def test_the_cli_prints_mmssls_warnings_as_one_line():
    from mmssl import cli

    message = UserWarning("plugin 'x' (x) skipped: ImportError: no")
    assert cli.format_warning(message, UserWarning, registry.__file__, 183, "load_plugins()") == (
        "mmssl: warning: plugin 'x' (x) skipped: ImportError: no\n")
    other = cli.format_warning(message, UserWarning, "/site-packages/other/mod.py", 7, "f()")
    assert other.startswith("/site-packages/other/mod.py:7: UserWarning: plugin 'x'")
