"""The registries' declarative index (read by ``mmssl list`` and recipe validation without
importing torch) agrees with what the modules really register."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import mmssl
from mmssl.registry import ALL, TASKS, Registry, RegistryError, load_all


@pytest.fixture(scope="module")
def loaded():
    """Every module of the package imported (not only those the index names), so that a
    registration the index lacks shows up too."""
    load_all()
    for info in pkgutil.walk_packages(mmssl.__path__, "mmssl."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    return {kind: registry.registered() for kind, registry in ALL.items()}


@pytest.mark.parametrize("kind", list(ALL))
def test_index_and_registrations_name_the_same_entries(kind, loaded):
    assert sorted(loaded[kind]) == ALL[kind].names()


@pytest.mark.parametrize("kind", list(ALL))
def test_every_entry_lives_where_the_index_says(kind, loaded):
    for name, entry in loaded[kind].items():
        declared = ALL[kind].describe(name)
        assert entry.obj.__module__ == declared.module, name
        assert declared.help.endswith(".") and "\n" not in declared.help, name  # one whole line


def test_task_configs_in_the_index_are_the_registered_ones(loaded):
    for name, entry in loaded["tasks"].items():
        assert entry.config is not None and TASKS.config_class(name) is entry.config, name
        assert entry.config.__module__ == "mmssl.tasks.configs"


def test_get_imports_the_declared_module_on_first_use(tmp_path, monkeypatch):
    (tmp_path / "plugin_mod.py").write_text(
        "from mmssl.registry import HEADS\n"
        "@HEADS.register('plugin_head')\n"
        "class PluginHead:\n    'A test head.'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("head")
    registry.declare("plugin_head", "plugin_mod", "A test head.")
    assert "plugin_head" in registry and registry.names() == ["plugin_head"]
    assert not registry.registered()
    from mmssl.registry import HEADS

    monkeypatch.setattr(HEADS, "_index", {**HEADS._index, "plugin_head": registry.describe("plugin_head")})
    monkeypatch.setattr(HEADS, "_entries", dict(HEADS._entries))
    assert HEADS.get("plugin_head").obj.__name__ == "PluginHead"


def test_unknown_name_suggests_the_closest_without_importing():
    with pytest.raises(RegistryError, match="did you mean 'mae'"):
        TASKS.describe("maee")
