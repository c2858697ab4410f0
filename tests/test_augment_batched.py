"""Views made on the device (``data.image.augment_on: device``) follow the per-example views'
distribution, with independent random parameters for each image of a batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import ks_2samp
from torchvision.transforms import v2

from mmssl.augment.batched import BatchedViews, crop_boxes
from mmssl.augment.vision import ViewConfig, view_transform
from mmssl.data.sources import load_data
from mmssl.modalities.vision import decode_image
from mmssl.recipe import DataConfig, ImageConfig, recipe_from_dict
from mmssl.tasks.base import build_task

IMAGE = ImageConfig(size=32, mean=[0.4914, 0.4822, 0.4465], std=[0.2470, 0.2435, 0.2616])
SIMCLR = ViewConfig(32, (0.2, 1.0), flip=True, jitter=0.5, blur_prob=0.5)
ALPHA = 1e-3  # a real difference gives p-values far below this at these sample sizes


def both_paths(pictures: list[Image.Image], view: ViewConfig, device_view: ViewConfig | None = None):
    """The views of each picture from the per-example transform and from one device batch."""
    torch.manual_seed(0)
    per_example = torch.stack([view_transform(IMAGE, view)(p) for p in pictures])
    batched = BatchedViews(IMAGE, [device_view or view])
    images = torch.stack([batched(p)[0] for p in pictures])
    return per_example, batched.finish([images])[0]


def pixels(views: torch.Tensor) -> torch.Tensor:
    """Normalized views back in [0, 1]."""
    mean = torch.tensor(IMAGE.mean).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE.std).view(1, 3, 1, 1)
    return views * std + mean


def min_p(a: torch.Tensor, b: torch.Tensor) -> float:
    """The smallest two-sample KS p-value over the columns of ``[n, k]`` statistics."""
    return min(ks_2samp(a[:, k].numpy(), b[:, k].numpy()).pvalue for k in range(a.shape[1]))


def test_crop_boxes_are_drawn_as_random_resized_crop_draws_them():
    for height, width, scale in ((32, 32, (0.2, 1.0)), (24, 40, (0.08, 1.0)), (20, 64, (0.9, 1.0))):
        crop = v2.RandomResizedCrop(8, scale=scale)
        torch.manual_seed(0)
        ours = crop_boxes(3000, height, width, scale, torch.device("cpu"))
        params = [crop.make_params([torch.zeros(3, height, width)]) for _ in range(3000)]
        theirs = torch.tensor([[p["left"], p["top"], p["left"] + p["width"], p["top"] + p["height"]]
                               for p in params], dtype=torch.float32)
        for boxes in (ours, theirs):
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()

        def described(b):
            w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
            return torch.stack([w * h, torch.log(w / h), b[:, 0], b[:, 1]], dim=1)

        assert min_p(described(ours), described(theirs)) > ALPHA, (height, width, scale)


def test_each_image_of_a_batch_gets_its_own_flip_grey_and_jitter():
    """256 copies of one picture in one batch: torchvision v2 on a batch would flip all or
    none; here about half are flipped and about a fifth are grey."""
    ramp = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (32, 1))
    picture = Image.fromarray(np.stack([ramp, 255 - ramp, np.full_like(ramp, 90)], axis=-1))
    view = ViewConfig(32, (0.6, 1.0), flip=True, jitter=0.5, blur_prob=0.0)
    batched = BatchedViews(IMAGE, [view])
    torch.manual_seed(0)
    out = pixels(batched.finish([torch.stack([batched(picture)[0]] * 256)])[0])
    grey = (out[:, 0] - out[:, 1]).abs().amax(dim=(1, 2)) < 1e-4
    rises = out[:, 0, :, -1].mean(dim=1) > out[:, 0, :, 0].mean(dim=1)  # brightness grows left to right
    colour = ~grey
    assert 0.12 < grey.float().mean() < 0.28
    assert 0.38 < (~rises[colour]).float().mean() < 0.62  # flipped, among the coloured views
    assert len({round(v, 4) for v in out[colour].mean(dim=(1, 2, 3)).tolist()}) > 100  # own jitter factors


def test_colour_steps_match_the_per_example_distribution():
    """On plain colour images crops, flips and blur change nothing, so each output colour
    shows the jitter factors, their order, the jitter and grey probabilities."""
    pictures = [Image.new("RGB", (32, 32), (150, 100, 75))] * 400
    per_example, batched = both_paths(pictures, SIMCLR)
    colours = [pixels(v).mean(dim=(2, 3)) for v in (per_example, batched)]
    assert min_p(*colours) > ALPHA
    # the same statistics tell a different jitter probability or strength apart
    for wrong in (ViewConfig(32, (0.2, 1.0), jitter=0.5, jitter_prob=0.4, blur_prob=0.5),
                  ViewConfig(32, (0.2, 1.0), jitter=0.8, blur_prob=0.5)):
        _, off = both_paths(pictures, SIMCLR, wrong)
        assert min_p(colours[0], pixels(off).mean(dim=(2, 3))) < ALPHA, wrong


@pytest.mark.slow
def test_views_of_cifar_match_the_per_example_distribution(shared_data):
    files = {"test": str(shared_data / "cifar10" / "test.parquet")}
    data = load_data(DataConfig(source="parquet", data_files=files, split="test", max_examples=400))
    pictures = [decode_image(data[i]["image"]) for i in range(len(data))]
    per_example, batched = both_paths(pictures, SIMCLR)

    def described(views):  # per channel: mean, spread; sharpness
        sharp = (views[..., 1:] - views[..., :-1]).abs().mean(dim=(1, 2, 3)).unsqueeze(1)
        return torch.cat([views.mean(dim=(2, 3)), views.std(dim=(2, 3)), sharp], dim=1)

    assert min_p(described(per_example), described(batched)) > ALPHA
    _, strong = both_paths(pictures, SIMCLR, ViewConfig(32, (0.2, 1.0), jitter=1.0, blur_prob=0.5))
    assert min_p(described(per_example), described(strong)) < ALPHA


def device_recipe(task: str = "simclr", **task_fields):
    return recipe_from_dict({
        "name": "device-views",
        "task": {"name": task, **task_fields},
        "model": {"preset": "nano", "config": {"patch_size": 4, "hidden_size": 32, "num_hidden_layers": 1,
                                               "num_attention_heads": 2, "intermediate_size": 64}},
        "data": {"source": "sklearn_digits", "image": {"size": 16, "augment_on": "device"}},
        "train": {"batch_size": 8, "max_steps": 1},
    })


def test_simclr_makes_its_views_from_the_collated_uint8_batch():
    recipe = device_recipe(projection_dim=16, projection_hidden_dim=32, blur_prob=0.5)
    torch.manual_seed(0)
    task = build_task(recipe)
    data = load_data(recipe.data, required=task.required_columns)
    batch = task.collate([task.preprocess(data[i]) for i in range(8)])
    assert set(batch) == {"views_0"}
    assert batch["views_0"].dtype == torch.uint8 and batch["views_0"].shape == (8, 3, 16, 16)
    first, second = (view["pixel_values"] for view in task.view_batches(batch))
    assert first.dtype == torch.float32 and first.shape == (8, 3, 16, 16)
    assert not torch.equal(first, second)
    out = task(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert task.encoder.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0


def test_dino_local_crops_get_their_own_size_on_the_device():
    recipe = device_recipe("dino", out_dim=64, hidden_dim=32, bottleneck_dim=16, num_local_crops=2,
                           local_size=8)
    task = build_task(recipe)
    data = load_data(recipe.data, required=task.required_columns)
    views = task.view_batches(task.collate([task.preprocess(data[i]) for i in range(4)]))
    assert [tuple(v["pixel_values"].shape[-2:]) for v in views] == [(16, 16), (16, 16), (8, 8), (8, 8)]


def test_a_task_without_device_views_refuses_the_option():
    recipe = recipe_from_dict({"name": "mae", "task": {"name": "mae"}, "model": {"preset": "nano"},
                               "data": {"source": "sklearn_digits", "image": {"size": 16, "augment_on": "device"}},
                               "train": {"batch_size": 8, "max_steps": 1}})
    with pytest.raises(ValueError, match="augment_on=device: task 'mae'"):
        build_task(recipe)
