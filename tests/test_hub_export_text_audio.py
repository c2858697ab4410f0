"""Export of the MLM and wav2vec2 tasks: Auto classes reload them and compute the same."""

from __future__ import annotations

import numpy as np
import torch
from test_tokenizer import corpus

from mmssl.hub.export import write_export
from mmssl.modalities.tokenizer import train_tokenizer
from mmssl.recipe import recipe_from_dict
from mmssl.tasks.base import build_task


def test_mlm_export_loads_as_masked_lm_encoder_and_tokenizer(tmp_path):
    from transformers import (
        AutoModel,
        AutoModelForMaskedLM,
        AutoTokenizer,
        BertForMaskedLM,
        BertModel,
    )

    train_tokenizer(corpus(), tmp_path / "tok", vocab_size=120)
    recipe = recipe_from_dict({
        "task": {"name": "mlm"},
        "data": {"text": {"tokenizer": str(tmp_path / "tok"), "max_length": 32}},
        "model": {"preset": "nano"},
    })
    torch.manual_seed(0)
    task = build_task(recipe).eval()
    write_export(task, recipe, tmp_path / "export")

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "export")
    texts = ["the cat sat on the mat", "a dog"]
    ours_ids = task.processor()(texts, padding=True, return_tensors="pt")
    theirs_ids = tokenizer(texts, padding=True, return_tensors="pt")
    assert torch.equal(ours_ids["input_ids"], theirs_ids["input_ids"])

    mlm = AutoModelForMaskedLM.from_pretrained(tmp_path / "export").eval()
    encoder = AutoModel.from_pretrained(tmp_path / "export", subfolder="encoder").eval()
    assert isinstance(mlm, type(task.export_model())) and isinstance(mlm, BertForMaskedLM)
    assert isinstance(encoder, BertModel)
    with torch.no_grad():
        ours = task.export_model()(**ours_ids).logits
        theirs = mlm(**theirs_ids).logits
        hidden = encoder(**theirs_ids).last_hidden_state
        ours_hidden = task.backbone(**ours_ids).last_hidden_state
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    torch.testing.assert_close(hidden, ours_hidden, atol=1e-5, rtol=0)


def test_wav2vec2_export_loads_as_pretraining_encoder_and_feature_extractor(tmp_path):
    from transformers import AutoFeatureExtractor, AutoModel, AutoModelForPreTraining, Wav2Vec2Model

    recipe = recipe_from_dict({
        "task": {"name": "wav2vec2", "num_negatives": 10, "mask_length": 4, "min_masks": 1},
        "model": {"preset": "nano"},
        "data": {"source": "parquet", "audio": {"max_seconds": 1.0, "min_seconds": 0.1}},
    })
    torch.manual_seed(0)
    task = build_task(recipe).eval()
    write_export(task, recipe, tmp_path / "export")

    extractor = AutoFeatureExtractor.from_pretrained(tmp_path / "export", subfolder="encoder")
    wave = np.sin(np.linspace(0, 400 * np.pi, 8000)).astype(np.float32)
    theirs_in = extractor(wave, sampling_rate=16000, return_tensors="pt")
    ours_in = task.processor()(wave, sampling_rate=16000, return_tensors="pt")
    torch.testing.assert_close(theirs_in["input_values"], ours_in["input_values"])

    pretraining = AutoModelForPreTraining.from_pretrained(tmp_path / "export").eval()
    encoder = AutoModel.from_pretrained(tmp_path / "export", subfolder="encoder").eval()
    assert isinstance(pretraining, type(task.export_model())) and isinstance(encoder, Wav2Vec2Model)
    values = theirs_in["input_values"]
    with torch.no_grad():
        ours = task.export_model()(values)
        theirs = pretraining(values)
        hidden = encoder(values).last_hidden_state
        ours_hidden = task.backbone(values).last_hidden_state
    torch.testing.assert_close(theirs.projected_states, ours.projected_states, atol=1e-5, rtol=0)
    torch.testing.assert_close(hidden, ours_hidden, atol=1e-5, rtol=0)
