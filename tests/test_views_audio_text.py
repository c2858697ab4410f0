"""SimCLR, BYOL and DINO on audio and text: the views (synthetic tones, known token ids),
the tasks' batches, learning on a fixed batch, eval features and export."""

from __future__ import annotations

import math

import pytest
import torch
from test_tokenizer import corpus

from mmssl.augment.audio import AudioViewConfig, AudioViews, add_noise, band_stop, time_mask
from mmssl.augment.text import TextViewConfig, TextViews, span_deletion, token_dropout
from mmssl.hub.export import write_export
from mmssl.modalities.tokenizer import train_tokenizer
from mmssl.recipe import RecipeError, recipe_from_dict
from mmssl.tasks.base import build_task

RATE = 16000


def tone(freqs: list[float], seconds: float = 1.0, rate: int = RATE) -> torch.Tensor:
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    return sum(torch.sin(2 * math.pi * f * t) for f in freqs).float()


def rms(x: torch.Tensor) -> float:
    return x.pow(2).mean().sqrt().item()


def only(**steps) -> AudioViewConfig:
    """A view config with every random step off except those given."""
    off = dict(crop_seconds=None, gain_prob=0.0, noise_prob=0.0, time_mask_prob=0.0, freq_mask_prob=0.0)
    return AudioViewConfig(**{**off, **steps})


# ----------------------------------------------------------------------------- audio views


def test_band_stop_removes_the_band_and_keeps_the_rest():
    wave = tone([1000.0, 4000.0])
    n_fft = 512  # bins of 31.25 Hz: 3500-4500 Hz is bins 112-144
    out = band_stop(wave, 112, 144, n_fft)
    spectrum_in, spectrum_out = torch.fft.rfft(wave).abs(), torch.fft.rfft(out).abs()  # 1 Hz bins
    assert out.shape == wave.shape
    assert spectrum_out[4000] < 1e-3 * spectrum_in[4000]  # more than 60 dB down
    assert spectrum_out[1000] == pytest.approx(spectrum_in[1000].item(), rel=1e-3)
    assert band_stop(wave, 0, 0, n_fft) is wave  # an empty band changes nothing


@pytest.mark.parametrize("db", [6.0, -9.5])
def test_gain_changes_rms_by_the_decibels_asked(db):
    wave = tone([440.0], 0.5)
    out = AudioViews(only(gain_prob=1.0, gain_db=[db, db]), RATE)(wave)
    assert 20 * math.log10(rms(out) / rms(wave)) == pytest.approx(db, abs=1e-4)


def test_noise_is_added_at_the_snr_asked():
    wave = tone([440.0], 0.5)
    out = add_noise(wave, 10.0, torch.Generator().manual_seed(0))
    noise = out - wave
    assert 10 * math.log10(wave.pow(2).sum() / noise.pow(2).sum()) == pytest.approx(10.0, abs=1e-3)
    assert abs(noise.mean().item()) < 0.05 * rms(noise)  # zero-mean Gaussian, not a DC offset


def test_crop_has_the_length_asked_and_comes_from_the_clip():
    wave = torch.arange(RATE, dtype=torch.float32)  # a ramp: the values tell the offset
    view = AudioViews(only(crop_seconds=0.25), RATE)
    torch.manual_seed(3)
    crop = view(wave)
    assert crop.shape == (RATE // 4,)
    start = int(crop[0])
    assert torch.equal(crop, wave[start : start + RATE // 4])
    short = wave[:1000]
    assert torch.equal(view(short), short)  # shorter clips are kept whole, never padded


def test_time_mask_zeroes_one_span_of_at_most_the_fraction():
    wave = torch.ones(10_000)
    for seed in range(20):
        out = time_mask(wave, 0.1, torch.Generator().manual_seed(seed))
        zeros = (out == 0).nonzero().flatten()
        assert len(zeros) <= 1000
        if len(zeros):
            assert zeros[-1] - zeros[0] + 1 == len(zeros)  # one contiguous span
    assert torch.equal(wave, torch.ones(10_000))  # the input is left alone


def test_audio_views_are_deterministic_under_a_seed_and_differ_across_seeds():
    wave = tone([300.0, 2500.0], 0.8)
    view = AudioViews(AudioViewConfig(crop_seconds=0.5, gain_prob=1.0, noise_prob=1.0,
                                      time_mask_prob=1.0, freq_mask_prob=1.0), RATE)

    def draw(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return view(wave)

    assert torch.equal(draw(1), draw(1))
    assert draw(1).shape == (8000,) and not torch.equal(draw(1), draw(2))


@pytest.mark.parametrize("bad", [dict(gain_prob=1.5), dict(gain_db=[6.0, -6.0]),
                                 dict(time_mask_fraction=1.0), dict(crop_seconds=0.0)])
def test_audio_view_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        AudioViewConfig(**bad)


# ----------------------------------------------------------------------------- text views

CLS, SEP = 2, 3
SPECIAL = torch.tensor([0, 1, CLS, SEP])


def ids(*tokens: int) -> torch.Tensor:
    return torch.tensor([CLS, *tokens, SEP])


def test_token_dropout_drops_each_ordinary_token_with_p_and_keeps_specials():
    text = ids(*range(10, 1010))
    special = torch.isin(text, SPECIAL)
    out = token_dropout(text, special, 0.3, torch.Generator().manual_seed(0))
    draw = torch.rand(text.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, text[special | (draw >= 0.3)])  # the known seed's draws
    assert out[0] == CLS and out[-1] == SEP
    assert 0.25 < 1 - (len(out) - 2) / 1000 < 0.35


def test_token_dropout_never_empties_a_text():
    for seed in range(50):
        g = torch.Generator().manual_seed(seed)
        one = ids(42)
        assert torch.equal(token_dropout(one, torch.isin(one, SPECIAL), 0.99, g), one)
        three = ids(7, 8, 9)
        out = token_dropout(three, torch.isin(three, SPECIAL), 0.99, g)
        assert out[0] == CLS and out[-1] == SEP and len(out) >= 3


def test_span_deletion_removes_one_contiguous_span_up_to_the_fraction():
    text = ids(*range(10, 30))  # 20 ordinary tokens: spans of 1 to 5 with fraction 0.25
    lengths = set()
    for seed in range(100):
        out = span_deletion(text, torch.isin(text, SPECIAL), 0.25, torch.Generator().manual_seed(seed))
        kept = out[1:-1].tolist()
        removed = sorted(set(range(10, 30)) - set(kept))
        assert out[0] == CLS and out[-1] == SEP
        assert 1 <= len(removed) <= 5 and removed == list(range(removed[0], removed[-1] + 1))
        assert kept == [t for t in range(10, 30) if t not in removed]  # order kept
        lengths.add(len(removed))
    assert lengths == {1, 2, 3, 4, 5}


def test_span_deletion_keeps_specials_inside_a_packed_block_and_short_texts_whole():
    block = torch.tensor([CLS, 10, 11, SEP, 12, 13, SEP, 14])
    for seed in range(30):
        out = span_deletion(block, torch.isin(block, SPECIAL), 0.9, torch.Generator().manual_seed(seed))
        assert (out == SEP).sum() == 2 and out[0] == CLS and len(out) < len(block)
    one = ids(42)
    assert torch.equal(span_deletion(one, torch.isin(one, SPECIAL), 0.9), one)


def test_text_views_are_deterministic_under_a_seed():
    views = TextViews(TextViewConfig(token_dropout=0.2, span_deletion_prob=1.0), SPECIAL.tolist())
    text = ids(*range(10, 60))

    def draw(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return views(text)

    assert torch.equal(draw(5), draw(5)) and not torch.equal(draw(5), draw(6))
    assert len(draw(5)) < len(text)


# ----------------------------------------------------------------------------- tasks

HEADS = {
    "simclr": {"projection_dim": 16, "projection_hidden_dim": 32, "temperature": 0.2},
    "byol": {"projection_dim": 16, "hidden_dim": 32},
    "dino": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "num_local_crops": 0},
}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(corpus(), out, vocab_size=120)
    return out


def audio_task(name: str, **fields):
    torch.manual_seed(0)
    return build_task(recipe_from_dict({
        "task": {"name": name, "modality": "audio", **HEADS[name],
                 "audio_views": {"crop_seconds": 0.25, "local_crop_seconds": 0.125}, **fields},
        "model": {"preset": "nano"},
        "data": {"audio": {"max_seconds": 1.0, "min_seconds": 0.1}},
    }))


def text_task(name: str, tokenizer_dir, **fields):
    torch.manual_seed(0)
    return build_task(recipe_from_dict({
        "task": {"name": name, "modality": "text", **HEADS[name], **fields},
        "model": {"preset": "nano"},
        "data": {"text": {"tokenizer": str(tokenizer_dir), "max_length": 32, "packing": False}},
    }))


def clips(n: int) -> list[dict]:
    """Tones of different pitch and length, as decoded ``datasets`` audio cells."""
    return [{"audio": {"array": tone([200.0 + 150 * i], 0.3 + 0.05 * (i % 4)).numpy(), "sampling_rate": RATE},
             "label": i % 2} for i in range(n)]


def texts(task, n: int) -> list[dict]:
    import datasets

    data = datasets.Dataset.from_dict({"text": corpus(n, seed=1)})
    return list(task.prepare_dataset(data))


def train_batch(task, examples: list[dict]) -> dict:
    out = []
    for i, example in enumerate(examples):
        torch.manual_seed(i)
        out.append(task.preprocess(example, train=True))
    return task.collate(out)


def test_audio_view_batches_shapes_and_seeds():
    task = audio_task("dino", num_local_crops=2)
    assert task.required_columns == ("audio",) and task.pooling == "mean"
    batch = train_batch(task, clips(4))
    views = task.view_batches(batch)
    assert [v["input_values"].shape for v in views] == [(4, 4000), (4, 4000), (4, 2000), (4, 2000)]
    assert all(torch.equal(v["attention_mask"], torch.ones_like(v["attention_mask"])) for v in views)
    assert not torch.equal(views[0]["input_values"], views[1]["input_values"])
    again = train_batch(task, clips(4))
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    joined = task.join(views[:2])
    assert joined["input_values"].shape == (8, 4000)
    assert task.features(task.encoder, joined).shape == (8, 64)


def test_text_view_batches_shapes_and_seeds(tokenizer_dir):
    task = text_task("simclr", tokenizer_dir)
    tok = task.modality.tokenizer
    examples = texts(task, 6)
    batch = train_batch(task, examples)
    assert set(batch) == {f"views_{k}_{key}" for k in (0, 1) for key in ("input_ids", "attention_mask")}
    first, second = task.view_batches(batch)
    lengths = first["attention_mask"].sum(1)
    assert torch.all(first["input_ids"][:, 0] == tok.cls_token_id)
    assert torch.all(first["input_ids"].gather(1, (lengths - 1)[:, None]) == tok.sep_token_id)
    assert torch.all(lengths <= torch.tensor([len(ex["input_ids"]) for ex in examples]))
    assert not torch.equal(first["input_ids"], second["input_ids"])
    again = train_batch(task, examples)
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    joined = task.join([first, second])
    assert joined["input_ids"].shape[0] == 12
    assert torch.equal(joined["attention_mask"].sum(1)[:6], lengths)


def fixed_batch_losses(task, batch: dict, steps: int, reseed: bool = False) -> list[float]:
    """Losses of ``steps`` AdamW steps on one batch; ``reseed`` seeds each step's masks by its index."""
    optimizer = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for step in range(steps):
        if reseed:
            torch.manual_seed(step)
        out = task(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        task.on_step_end(step + 1, steps)
        losses.append(out.loss.item())
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("name", ["simclr", "byol", "dino"])
@pytest.mark.parametrize("modality", ["audio", "text"])
def test_loss_goes_down_on_a_fixed_batch(name, modality, tokenizer_dir):
    """DINO's loss is the teacher's entropy plus the student's divergence from it, and the
    center moves the first term; so DINO runs against a fixed target here (teacher frozen by
    momentum 1, center frozen in eval mode, which also only turns off dropout)."""
    fields = {"momentum": 1.0} if name == "dino" else {}
    if modality == "audio":
        task = audio_task(name, **fields)
        batch = train_batch(task, clips(8))
    else:
        task = text_task(name, tokenizer_dir, **fields)
        batch = train_batch(task, texts(task, 8))
    if name == "dino":
        task.eval()
    torch.manual_seed(0)
    losses = fixed_batch_losses(task, batch, 12)
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses


def test_audio_eval_embeddings_ignore_padding():
    task = audio_task("simclr").eval()
    examples = [task.preprocess(ex, train=False) for ex in clips(3)]
    batch = task.collate_eval(examples)
    assert batch["input_values"].shape[0] == 3 and set(batch["labels"].tolist()) == {0, 1}
    with torch.no_grad():
        together = task.embed(batch)
        alone = torch.cat([task.embed(task.collate_eval([ex])) for ex in examples])
    assert together.shape == (3, 64)
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="CLS"):
        task.embed(batch, pooling="cls")


def test_text_eval_embeddings_ignore_padding(tokenizer_dir):
    task = text_task("byol", tokenizer_dir).eval()
    examples = [task.preprocess({"text": t, "label": i}, train=False)
                for i, t in enumerate(["the cat sat on the mat", "a dog", "birds fly over the old house"])]
    batch = task.collate_eval(examples)
    with torch.no_grad():
        together = task.embed(batch, "mean")
        alone = torch.cat([task.embed(task.collate_eval([ex]), "mean") for ex in examples])
        cls = task.embed(batch, "cls")
    assert together.shape == cls.shape == (3, 64)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    assert not torch.allclose(together, cls)


def test_audio_export_loads_with_automodel_and_feature_extractor(tmp_path):
    from transformers import AutoFeatureExtractor, AutoModel, Wav2Vec2Model

    task = audio_task("simclr").eval()
    write_export(task, task.recipe, tmp_path / "export")
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path / "export", subfolder="encoder")
    encoder = AutoModel.from_pretrained(tmp_path / "export", subfolder="encoder").eval()
    assert isinstance(encoder, Wav2Vec2Model)
    wave = tone([440.0], 0.5).numpy()
    theirs_in = extractor(wave, sampling_rate=RATE, return_tensors="pt")
    ours = task.collate_eval([task.preprocess({"audio": {"array": wave, "sampling_rate": RATE}}, train=False)])
    torch.testing.assert_close(theirs_in["input_values"], ours["input_values"], atol=1e-5, rtol=0)
    with torch.no_grad():
        hidden = encoder(theirs_in["input_values"]).last_hidden_state
    torch.testing.assert_close(hidden.mean(1), task.embed(ours), atol=1e-4, rtol=0)


def test_text_export_loads_with_automodel_and_tokenizer(tokenizer_dir, tmp_path):
    from transformers import AutoModel, AutoTokenizer, BertModel

    task = text_task("dino", tokenizer_dir).eval()
    write_export(task, task.recipe, tmp_path / "export")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "export")
    encoder = AutoModel.from_pretrained(tmp_path / "export", subfolder="encoder").eval()
    assert isinstance(encoder, BertModel)
    theirs_in = tokenizer(["the cat sat on the mat"], return_tensors="pt")
    ours = task.collate_eval([task.preprocess({"text": "the cat sat on the mat"}, train=False)])
    assert torch.equal(theirs_in["input_ids"], ours["input_ids"])
    with torch.no_grad():
        hidden = encoder(**theirs_in).last_hidden_state
    torch.testing.assert_close(hidden.mean(1), task.embed(ours), atol=1e-5, rtol=0)


def test_unsupported_combinations_are_clear_errors(tokenizer_dir):
    with pytest.raises(ValueError, match="num_local_crops"):
        text_task("dino", tokenizer_dir, num_local_crops=2)
    with pytest.raises(ValueError, match="no CLS"):
        audio_task("byol", pooling="cls")
    with pytest.raises(RecipeError, match="task.text_views"):
        text_task("simclr", tokenizer_dir, text_views={"token_dropout": 1.0})


def test_text_task_views_keep_cls_and_sep_but_may_drop_unk(tokenizer_dir):
    task = text_task("simclr", tokenizer_dir, text_views={"token_dropout": 0.9, "span_deletion_prob": 0.0})
    tok = task.modality.tokenizer
    assert tok.unk_token_id is not None
    ids = torch.tensor([tok.cls_token_id] + [tok.unk_token_id] * 50 + [tok.sep_token_id])
    torch.manual_seed(0)
    out = task.modality.text_views(ids)
    assert out[0] == tok.cls_token_id and out[-1] == tok.sep_token_id
    assert 3 <= len(out) < 20
