"""A fourth modality is one class: fixed-length float sequences ("signal"), defined here,
registered in ``MODALITIES``, trained with SimCLR and in a CLIP pairing with images,
evaluated with kNN and exported, with no change to mmssl (docs/architecture.md, "Add a
modality"). Its encoder is transformers' PatchTST, registered as a tiny backbone."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from datasets import Dataset
from PIL import Image
from test_views_audio_text import fixed_batch_losses
from transformers import (
    AutoFeatureExtractor,
    AutoModel,
    PatchTSTConfig,
    PatchTSTModel,
    Wav2Vec2FeatureExtractor,
)

from mmssl.backbones.base import Backbone, register
from mmssl.cli import main
from mmssl.modalities.base import Modality
from mmssl.recipe import RecipeError, recipe_from_dict
from mmssl.registry import BACKBONES, MODALITIES
from mmssl.tasks.base import build_task
from mmssl.weights import load_run

LENGTH = 32


class SignalModality(Modality):
    """Fixed-length float sequences from a ``signal`` column; views rescale, shift and add
    noise; batches are stacked ``input_values`` ``[batch, LENGTH]``."""

    name = "signal"
    column = "signal"
    default_backbone = "toy_patchtst"

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        values = example[self.column]
        if values is None or len(values) != LENGTH:
            raise ValueError(f"a signal must hold {LENGTH} values")
        out: dict[str, Any] = {"input_values": torch.as_tensor(values, dtype=torch.float32)}
        if "label" in example:
            out["label"] = example["label"]
        return out

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {"input_values": torch.stack([item["input_values"] for item in items])}
        if "label" in items[0]:
            batch["labels"] = torch.tensor([item["label"] for item in items])
        return batch

    def augment(self, example: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
        x = self.preprocess(example)["input_values"]
        count = self.view_request.count + self.view_request.num_local
        return [{"input_values": torch.roll(x, int(torch.randint(-2, 3, ()))) * (0.8 + 0.4 * torch.rand(()))
                 + 0.1 * torch.randn(LENGTH)} for _ in range(count)]


def _build(model: Any, data: Any, tokenizer: Any = None) -> PatchTSTModel:
    config = PatchTSTConfig(num_input_channels=1, context_length=LENGTH, patch_length=8, patch_stride=8,
                            d_model=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64,
                            do_mask_input=False)
    return PatchTSTModel(config)


def _pooled(model: PatchTSTModel, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
    """Mean over the patch tokens ``[batch, channels, patches, d_model]``."""
    return model(past_values=batch["input_values"].unsqueeze(-1)).last_hidden_state.mean(dim=(1, 2))


@pytest.fixture
def signal_modality():
    """The modality and its backbone registered for one test, then removed."""
    register(Backbone(
        name="toy_patchtst", modality="signal", model_type="patchtst", tasks=("simclr", "clip"),
        build=_build, pooled=_pooled, poolings=("mean",), pipeline_tag=None,
        processor=lambda data, tokenizer=None: Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=LENGTH, padding_value=0.0, do_normalize=False),
    ), __name__)
    MODALITIES.register("signal")(SignalModality)
    yield SignalModality
    MODALITIES.unregister("signal")
    BACKBONES.unregister("toy_patchtst")


def _png(value: float) -> dict[str, Any]:
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16), int(value * 255), dtype=np.uint8)).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def _write_data(folder: Path) -> dict[str, str]:
    """Two classes of noisy sines (2 and 5 periods), with a matching grey image each."""
    rng = np.random.default_rng(0)
    files = {}
    for split, count in (("train", 64), ("test", 32)):
        labels = np.arange(count) % 2
        t = np.linspace(0, 1, LENGTH, endpoint=False)
        signals = [np.sin(2 * np.pi * (2 + 3 * y) * t + rng.uniform(0, 2 * np.pi)) + 0.1 * rng.normal(size=LENGTH)
                   for y in labels]
        images = [_png(0.2 + 0.6 * y + 0.1 * rng.uniform()) for y in labels]
        files[split] = str(folder / f"{split}.parquet")
        Dataset.from_dict({"signal": [s.tolist() for s in signals], "image": images,
                           "label": labels.tolist()}).to_parquet(files[split])
    return files


def _recipe(tmp_path: Path, task: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": "toy", "output_dir": str(tmp_path / "run"), "seed": 0, "task": task,
        "data": {"source": "parquet", "data_files": _write_data(tmp_path), "image": {"size": 16, "channels": 1}},
        "train": {"batch_size": 16, "max_steps": 6, "save_every": 6, "log_every": 1, "progress": False,
                  "warmup_steps": 0, "epochs": None, "lr": 1e-3},
        **extra,
    }


def _pretrain(tmp_path: Path, recipe: dict[str, Any]) -> list[float]:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["pretrain", str(path)]) == 0
    lines = (Path(recipe["output_dir"]) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if "loss" in json.loads(line)]


SIMCLR = {"name": "simclr", "modality": "signal", "projection_dim": 16, "projection_hidden_dim": 32}


def test_simclr_learns_on_a_fixed_batch_of_the_toy_modality(signal_modality, tmp_path):
    task = build_task(recipe_from_dict(_recipe(tmp_path, SIMCLR)))
    assert isinstance(task.modality, signal_modality) and type(task.encoder) is PatchTSTModel
    data = Dataset.from_parquet(str(tmp_path / "train.parquet"))
    torch.manual_seed(0)
    batch = task.collate([task.preprocess(data[i]) for i in range(16)])
    assert batch["views_0_input_values"].shape == (16, LENGTH)
    losses = fixed_batch_losses(task, batch, 15)
    assert all(math.isfinite(x) for x in losses) and losses[-1] < 0.9 * losses[0]


@pytest.mark.slow
def test_toy_modality_pretrains_evaluates_and_exports(signal_modality, tmp_path):
    recipe = _recipe(tmp_path, SIMCLR, eval={"protocols": ["knn"], "label_fractions": [1.0], "knn_k": 5})
    losses = _pretrain(tmp_path, recipe)
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses) and len(set(losses)) > 1
    run = Path(recipe["output_dir"])
    assert main(["eval", str(run)]) == 0
    knn = json.loads((run / "eval" / "report.json").read_text())["results"]["pretrained"]["knn"]["1.0"]
    assert 0.0 <= knn["top1"] <= 1.0
    out = tmp_path / "export"
    assert main(["export", str(run), str(out)]) == 0
    encoder = AutoModel.from_pretrained(out / "encoder").eval()
    assert type(encoder) is PatchTSTModel
    assert isinstance(AutoFeatureExtractor.from_pretrained(out / "encoder"), Wav2Vec2FeatureExtractor)
    x = {"input_values": torch.randn(4, LENGTH)}
    _, trained = load_run(run)
    with torch.no_grad():
        assert torch.allclose(_pooled(encoder, x, "mean"), trained.eval().embed(x), atol=1e-5)


@pytest.mark.slow
def test_toy_modality_aligns_with_images_in_clip(signal_modality, tmp_path):
    task = {"name": "clip", "modalities": ["signal", "vision"], "embed_dim": 16,
            "towers": {"vision": {"config": {"patch_size": 4, "num_hidden_layers": 1}}}}
    losses = _pretrain(tmp_path, _recipe(tmp_path, task))
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses) and len(set(losses)) > 1


def test_a_modality_is_known_to_recipes_once_registered(signal_modality):
    task = {"name": "simclr", "modality": "signal"}
    assert recipe_from_dict({"task": task, "data": {}}).task.modality == "signal"
    MODALITIES.unregister("signal")
    with pytest.raises(RecipeError, match=r"unknown modality 'signal' \(known: audio, text, vision\)"):
        recipe_from_dict({"task": task, "data": {}})
    with pytest.raises(RecipeError, match="unknown modality 'signal'"):
        recipe_from_dict({"task": {"name": "clip", "modalities": ["signal", "vision"]}, "data": {}})


@pytest.mark.parametrize("task_name", ["data2vec", "data2vec2"])
def test_a_modality_without_per_token_masking_cannot_serve_data2vec(signal_modality, tmp_path, capsys, task_name):
    recipe = _recipe(tmp_path, {"name": task_name, "modality": "signal", "top_k": 1})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    capsys.readouterr()  # writing the data set's parquet files shows progress bars
    assert main(["pretrain", str(path)]) == 2
    assert capsys.readouterr().err == (
        "mmssl pretrain: error: task.modality=signal: the signal modality has no per-token masking, so it "
        "cannot serve masked prediction (data2vec); use a joint-embedding task (simclr)\n")
    assert not (Path(recipe["output_dir"]) / "metrics.jsonl").exists()
