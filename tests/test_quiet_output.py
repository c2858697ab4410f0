"""No noise on stderr: no "Downloading data" bar for local files, no "Removed shared tensor"
warning on every checkpoint of a model with tied weights."""

from __future__ import annotations

import logging

import torch
from accelerate import Accelerator
from PIL import Image
from transformers import BertConfig, BertForMaskedLM

from mmssl.data.sources import load_data
from mmssl.recipe import DataConfig
from mmssl.train.checkpoint import save_checkpoint
from mmssl.weights import model_weights


def test_a_local_image_folder_loads_without_a_download_bar(tmp_path, capfd):
    for i in range(20):  # datasets shows its bar from 16 files on
        folder = tmp_path / "train" / ("ab"[i % 2])
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (i, i, i)).save(folder / f"{i}.png")
    config = DataConfig(source="imagefolder", path=str(tmp_path), holdout_fraction=0.0)
    data = load_data(config, required=("image",))  # all 20 files, none held out
    assert len(data) == 20
    assert "Downloading data" not in capfd.readouterr().err


def test_tied_weights_save_quietly_and_stay_tied(tmp_path, capfd, caplog):
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)
    model = BertForMaskedLM(config)
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(model)
    with caplog.at_level(logging.WARNING):
        path = save_checkpoint(accelerator, tmp_path, {"step": 1}, keep_last=1)
    assert "Removed shared tensor" not in capfd.readouterr().err + caplog.text
    reloaded = BertForMaskedLM(config)
    reloaded.load_state_dict(model_weights(path), strict=False)
    assert reloaded.cls.predictions.decoder.weight is reloaded.bert.embeddings.word_embeddings.weight
    torch.testing.assert_close(reloaded.bert.embeddings.word_embeddings.weight,
                               model.bert.embeddings.word_embeddings.weight)
