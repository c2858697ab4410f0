"""Export: the folder loads with plain transformers and computes what the mmssl model does."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from hub_helpers import train_tiny_mae
from PIL import Image

from mmssl.cli import main
from mmssl.data.sources import load_data
from mmssl.weights import load_run


@pytest.fixture(scope="module")
def mae_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub-export")
    run_dir = train_tiny_mae(root / "run")
    out = root / "export"
    assert main(["export", str(run_dir), str(out)]) == 0
    return run_dir, out


def test_export_writes_the_documented_layout(mae_export):
    _, out = mae_export
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"README.md", "config.json", "model.safetensors", "preprocessor_config.json",
            "mmssl_recipe.yaml", "encoder/config.json", "encoder/model.safetensors",
            "encoder/preprocessor_config.json", "pretraining/config.json", "pretraining/model.safetensors",
            "pretraining/preprocessor_config.json"} <= names
    assert not any(name.endswith((".bin", ".pt")) for name in names)


def test_pretraining_model_loads_with_auto_and_matches(mae_export):
    from transformers import AutoModelForPreTraining, ViTMAEForPreTraining

    run_dir, out = mae_export
    _, task = load_run(run_dir)
    loaded = AutoModelForPreTraining.from_pretrained(out, subfolder="pretraining").eval()
    assert isinstance(loaded, ViTMAEForPreTraining)
    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = task.model(pixel_values=pixels, noise=noise)
        theirs = loaded(pixel_values=pixels, noise=noise)
    torch.testing.assert_close(theirs.logits, ours.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(theirs.loss, ours.loss, atol=1e-5, rtol=0)


def test_encoder_loads_as_vit_without_masking_and_matches(mae_export):
    from transformers import AutoModel, ViTModel

    run_dir, out = mae_export
    _, task = load_run(run_dir)
    encoder = AutoModel.from_pretrained(out, subfolder="encoder", add_pooling_layer=False).eval()
    assert isinstance(encoder, ViTModel)
    pixels = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    identity = torch.arange(16.0).expand(3, 16)  # keeps MAE's patch order: nothing shuffled
    with torch.no_grad():
        saved = task.model.vit.config.mask_ratio
        task.model.vit.config.mask_ratio = 0.0
        ours = task.model.vit(pixel_values=pixels, noise=identity).last_hidden_state
        task.model.vit.config.mask_ratio = saved
        theirs = encoder(pixel_values=pixels).last_hidden_state
        pooled = task.embed({"pixel_values": pixels}, pooling="mean")
    assert theirs.shape == (3, 17, 32)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    torch.testing.assert_close(theirs[:, 1:].mean(1), pooled, atol=1e-5, rtol=0)


def test_image_processor_matches_the_eval_transform(mae_export):
    from transformers import AutoImageProcessor

    run_dir, out = mae_export
    recipe, task = load_run(run_dir)
    processor = AutoImageProcessor.from_pretrained(out, subfolder="encoder")
    example = load_data(recipe.data, required=task.required_columns)[0]
    ours = task.preprocess(example, train=False)["pixel_values"]
    from mmssl.modalities.vision import decode_image

    image = decode_image(example["image"], 3)
    theirs = processor(images=image, return_tensors="pt")["pixel_values"][0]
    assert theirs.shape == ours.shape == (3, 16, 16)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    flat = Image.fromarray(np.full((16, 16, 3), 255, dtype=np.uint8))
    assert torch.allclose(processor(images=flat, return_tensors="pt")["pixel_values"], torch.ones(1, 3, 16, 16))


@pytest.mark.slow
def test_export_loads_in_a_process_without_mmssl(mae_export):
    _, out = mae_export
    code = (
        "import sys, torch\n"
        "from transformers import AutoModel, AutoImageProcessor\n"
        f"m = AutoModel.from_pretrained({str(out)!r}, subfolder='encoder', add_pooling_layer=False)\n"
        f"AutoImageProcessor.from_pretrained({str(out)!r})\n"
        "assert 'mmssl' not in sys.modules\n"
        "print(type(m).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ViTModel"


def test_export_refuses_a_non_empty_folder(mae_export, tmp_path, capsys):
    run_dir, _ = mae_export
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["export", str(run_dir), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "not an mmssl export" in err
    assert "pass --overwrite" not in err  # --overwrite would be refused too
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_export_shows_progress_on_a_terminal_only(mae_export, tmp_path, monkeypatch, capsys):
    run_dir, _ = mae_export
    assert main(["export", str(run_dir), str(tmp_path / "quiet")]) == 0
    err = capsys.readouterr().err
    assert "export run:" not in err
    assert "Writing model shards" not in err and "Loading weights" not in err  # transformers' bars
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["export", str(run_dir), str(tmp_path / "shown")]) == 0
    err = capsys.readouterr().err
    assert "export run: loading the run" in err and "export run: writing shown" in err


def test_a_missing_checkpoint_names_the_ones_the_run_kept(mae_export, tmp_path, capsys):
    run_dir, _ = mae_export
    missing = run_dir / "checkpoints" / "step_00000300"
    assert main(["export", str(run_dir), str(tmp_path / "out"), "--checkpoint", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"{missing}: no such checkpoint (the run keeps step_00000003)" in err
    assert not (tmp_path / "out").exists()
