"""Backbone configs: presets plus overrides, derived fields following the overrides."""

from __future__ import annotations

import pytest

from mmssl.modalities.vision import vit_config
from mmssl.recipe import ImageConfig, ModelConfig


def test_overrides_reach_fields_derived_at_construction():
    config = vit_config(ModelConfig(preset="nano", config={"hidden_size": 96}), ImageConfig(size=32))
    assert config.hidden_size == 96
    assert config.pooler_output_size == 96  # derived from hidden_size by ViTConfig
    assert config.num_hidden_layers == 4  # the preset's
    assert config.image_size == 32


def test_unknown_override_and_preset_are_named():
    with pytest.raises(ValueError, match=r"model.config.hiden_size: ViTConfig has no field"):
        vit_config(ModelConfig(preset="nano", config={"hiden_size": 96}), ImageConfig())
    with pytest.raises(ValueError, match=r"model.preset: unknown ViT preset 'huge'"):
        vit_config(ModelConfig(preset="huge"), ImageConfig())
