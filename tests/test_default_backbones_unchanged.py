"""Recipes that name no ``model.backbone`` train exactly as before the backbone registry:
the first losses of a few steps, for the same seed, equal those recorded on main before it
(commit 69d1c13, CPU, float32)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mmssl.cli import main

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3

#: ``python tests/test_default_backbones_unchanged.py`` prints these from the current code.
EXPECTED: dict[str, list[float]] = {
    "simclr_cifar10": [2.169983386993408, 2.5400023460388184, 2.142548084259033],
    "byol_cifar10": [1.9727965593338013, 1.5688951015472412, 1.2473260164260864],
    "dino_cifar10": [6.353377342224121, 6.5236053466796875, 6.7919020652771],
    "simclr_fsdd": [2.636662721633911, 2.1815195083618164, 2.92431902885437],
    "simclr_agnews": [1.4930328130722046, 0.9524601697921753, 1.4079632759094238],
    "mlm_agnews": [5.758522033691406, 5.663763046264648, 5.658311367034912],
    "data2vec_text_agnews": [1.3644134998321533, 1.271898627281189, 1.2166574001312256],
    "data2vec_vision_cifar10": [0.3129121661186218, 0.2875543236732483, 0.2602147161960602],
    "data2vec_audio_fsdd": [1.4373422861099243, 1.2939456701278687, 1.2280690670013428],
    "clip_av_mnist": [1.9991799592971802, 2.0607383251190186, 2.3786091804504395],
    # recorded on main e424630, before data2vec 2.0 moved onto the Modality interface
    "data2vec2_vision_cifar10": [1.320012092590332, 1.235106348991394, 1.1867111921310425],
    "data2vec2_text_agnews": [1.2667007446289062, 1.2058035135269165, 1.1689988374710083],
    "data2vec2_audio_fsdd": [1.3558279275894165, 1.310011625289917, 1.2517329454421997],
}


def first_losses(name: str, out: Path) -> list[float]:
    code = main(["pretrain", f"recipes/{name}.yaml", f"train.max_steps={STEPS}", "train.batch_size=8",
                 "train.log_every=1", "train.progress=false", "train.warmup_steps=0", "train.epochs=null", "data.max_examples=32",
                 "data.text.vocab_size=300", "eval=null", f"output_dir={out}"])
    assert code == 0
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_default_backbone_losses_unchanged(name, shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # recipes name ../shared/data
    assert first_losses(name, tmp_path / name) == pytest.approx(EXPECTED[name], rel=1e-5, abs=1e-7)


if __name__ == "__main__":
    import tempfile

    names = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in names:
            print(f'    "{recipe}": {first_losses(recipe, Path(tmp) / recipe)!r},', flush=True)
