"""Image views for joint-embedding tasks with torchvision v2: SimCLR's two views and
DINO's multi-crop (2 global + N local crops)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms import v2

from mmssl.recipe import ImageConfig


@dataclass
class ViewConfig:
    """One kind of view: crop size and scale, and the photometric augmentations."""

    size: int
    scale: tuple[float, float]
    flip: bool = True
    jitter: float = 0.5
    jitter_prob: float = 0.8
    grayscale_prob: float = 0.2
    blur_prob: float = 0.5


def view_transform(image: ImageConfig, view: ViewConfig) -> v2.Compose:
    """Random resized crop, flip, color jitter, grayscale, Gaussian blur, normalize (SimCLR's
    pipeline); color steps are left out for single-channel images."""
    steps: list[Any] = [v2.RandomResizedCrop(view.size, scale=view.scale, antialias=True)]
    if view.flip:
        steps.append(v2.RandomHorizontalFlip())
    if image.channels == 3 and view.jitter > 0:
        s = view.jitter
        steps.append(v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=view.jitter_prob))
        steps.append(v2.RandomGrayscale(p=view.grayscale_prob))
    if view.blur_prob > 0:
        kernel = max(3, (view.size // 10) | 1)  # about 10% of the side, odd
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=view.blur_prob))
    steps += [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(image.mean[: image.channels], image.std[: image.channels]),
    ]
    return v2.Compose(steps)


class MultiView:
    """Applies a list of view transforms to one image: ``[view(image) for view in views]``."""

    def __init__(self, transforms: list[v2.Compose]) -> None:
        self.transforms = transforms

    def __call__(self, picture: Any) -> list[torch.Tensor]:
        return [transform(picture) for transform in self.transforms]

    def finish(self, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        """The view batches as collated: the views were made in the workers
        (``mmssl.augment.batched.BatchedViews`` makes them here, on the device, instead)."""
        return batches


def collate_views(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack view ``k`` of every example into ``views_k`` ``[batch, C, H, W]`` (crops of one
    kind share a size; global and local crops go to different keys)."""
    count = len(examples[0]["views"])
    return {f"views_{k}": torch.stack([ex["views"][k] for ex in examples]) for k in range(count)}
