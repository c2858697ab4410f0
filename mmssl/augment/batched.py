"""Image views made on the device, a whole batch at a time (``data.image.augment_on: device``).

DataLoader workers only decode each image and resize it to ``image.size`` (short side, then
a centre square) as ``uint8``; the task then makes every view of the batch on the
accelerator, after the batch reached it. torchvision v2 transforms called on a batched
tensor draw one set of random parameters for the whole batch, so each step here draws its
parameters per image, with the same distributions as the per-example path
(``mmssl.augment.vision.view_transform``: v2's RandomResizedCrop, RandomHorizontalFlip,
ColorJitter in a random order under RandomApply, RandomGrayscale, GaussianBlur), and
applies them with batched tensor ops: ``torchvision.ops.roi_align`` crops and resizes
(bilinear) every image's box at once, and photometric steps use per-image factors.
Randomness comes from the device's global generator, which the loop seeds at every step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchvision.ops import roi_align
from torchvision.transforms import v2
from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

from mmssl.augment.vision import ViewConfig
from mmssl.recipe import ImageConfig

#: RandomResizedCrop's default aspect-ratio range and its number of tries per box.
RATIO = (3 / 4, 4 / 3)
TRIES = 10
GRAY = (0.2989, 0.587, 0.114)


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


def _per_image(mask: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, 1, 1, 1)


def crop_boxes(n: int, height: int, width: int, scale: tuple[float, float],
               device: torch.device) -> torch.Tensor:
    """``[n, 4]`` boxes ``(left, top, right, bottom)`` drawn as v2's RandomResizedCrop draws
    one: up to ten tries of area and log-aspect-ratio, the first that fits, else the whole
    image, clipped to the ratio range."""
    area = height * width * torch.empty(n, TRIES, device=device).uniform_(*scale)
    ratio = torch.exp(torch.empty(n, TRIES, device=device).uniform_(math.log(RATIO[0]), math.log(RATIO[1])))
    w = torch.round(torch.sqrt(area * ratio))
    h = torch.round(torch.sqrt(area / ratio))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # the first try that fits (0 when none does)
    w, h, found = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], fits.any(dim=1)
    fallback_w, fallback_h = _fallback_size(height, width)
    w = torch.where(found, w, torch.full_like(w, fallback_w))
    h = torch.where(found, h, torch.full_like(h, fallback_h))
    centre_top, centre_left = (height - h) // 2, (width - w) // 2
    top = torch.where(found, torch.floor(torch.rand(n, device=device) * (height - h + 1)), centre_top)
    left = torch.where(found, torch.floor(torch.rand(n, device=device) * (width - w + 1)), centre_left)
    return torch.stack([left, top, left + w, top + h], dim=1)


def _fallback_size(height: int, width: int) -> tuple[int, int]:
    """RandomResizedCrop's fallback: the whole image, cut to the nearest allowed ratio."""
    in_ratio = width / height
    if in_ratio < min(RATIO):
        return width, int(round(width / min(RATIO)))
    if in_ratio > max(RATIO):
        return int(round(height * max(RATIO))), height
    return width, height


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = factor.view(-1, 1, 1, 1)
    return (factor * x + (1 - factor) * other).clamp(0, 1)


def _brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, torch.zeros_like(x), factor)


def _contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, _grayscale(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def _saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, _grayscale(x), factor)


def _hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    hsv = _rgb_to_hsv(x)
    shifted = torch.cat([(hsv[:, :1] + factor.view(-1, 1, 1, 1)) % 1.0, hsv[:, 1:]], dim=1)
    return _hsv_to_rgb(shifted)


_JITTER_STEPS = (_brightness, _contrast, _saturation, _hue)


def color_jitter(x: torch.Tensor, strength: float, prob: float) -> torch.Tensor:
    """v2's ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) with probability ``prob``, per image: each
    image its own factors and its own random order of the four steps."""
    n, device = x.shape[0], x.device
    s = strength
    factors = [_uniform(n, max(0.0, 1 - 0.8 * s), 1 + 0.8 * s, device) for _ in range(3)]
    factors.append(_uniform(n, -0.2 * s, 0.2 * s, device))
    order = torch.rand(n, 4, device=device).argsort(dim=1)  # a random permutation per image
    applied = torch.rand(n, device=device) < prob
    for position in range(4):
        for step, (adjust, factor) in enumerate(zip(_JITTER_STEPS, factors)):
            now = applied & (order[:, position] == step)
            x = torch.where(_per_image(now), adjust(x, factor), x)
    return x


def gaussian_blur(x: torch.Tensor, kernel: int, sigma: torch.Tensor) -> torch.Tensor:
    """v2's GaussianBlur with a per-image sigma: one separable grouped convolution, reflect padding."""
    n, channels, height, width = x.shape
    offsets = torch.arange(kernel, device=x.device, dtype=x.dtype) - (kernel - 1) / 2
    weights = torch.exp(-0.5 * (offsets / sigma.view(-1, 1)) ** 2)
    weights = (weights / weights.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    pad = kernel // 2
    flat = torch.nn.functional.pad(x.reshape(1, n * channels, height, width), (pad, pad, pad, pad), mode="reflect")
    flat = torch.nn.functional.conv2d(flat, weights.view(-1, 1, kernel, 1), groups=n * channels)
    flat = torch.nn.functional.conv2d(flat, weights.view(-1, 1, 1, kernel), groups=n * channels)
    return flat.view(n, channels, height, width)


def batch_view(images: torch.Tensor, image: ImageConfig, view: ViewConfig) -> torch.Tensor:
    """One view of every image of a ``uint8`` batch ``[n, C, H, W]``: normalized float
    ``[n, C, size, size]``, each image with its own random parameters."""
    n, _, height, width = images.shape
    device = images.device
    x = images.float() / 255
    boxes = crop_boxes(n, height, width, view.scale, device)
    rois = torch.cat([torch.arange(n, device=device, dtype=x.dtype).view(-1, 1), boxes.to(x.dtype)], dim=1)
    x = roi_align(x, rois, output_size=view.size, aligned=True)
    if view.flip:
        x = torch.where(_per_image(torch.rand(n, device=device) < 0.5), x.flip(-1), x)
    if image.channels == 3 and view.jitter > 0:
        x = color_jitter(x, view.jitter, view.jitter_prob)
        gray = torch.rand(n, device=device) < view.grayscale_prob
        x = torch.where(_per_image(gray), _grayscale(x).expand_as(x), x)
    if view.blur_prob > 0:
        kernel = max(3, (view.size // 10) | 1)  # as view_transform
        blurred = gaussian_blur(x, kernel, _uniform(n, 0.1, 2.0, device))
        x = torch.where(_per_image(torch.rand(n, device=device) < view.blur_prob), blurred, x)
    mean = torch.tensor(image.mean[: image.channels], device=device).view(1, -1, 1, 1)
    std = torch.tensor(image.std[: image.channels], device=device).view(1, -1, 1, 1)
    return (x - mean) / std


class BatchedViews:
    """Drop-in for ``MultiView`` when views are made on the device: in the workers an image
    becomes one fixed-size ``uint8`` tensor; ``finish`` makes the views of the collated batch."""

    def __init__(self, image: ImageConfig, views: list[ViewConfig]) -> None:
        self.image, self.views = image, views
        self.resize = v2.Compose([v2.Resize(image.size, antialias=True), v2.CenterCrop(image.size),
                                  v2.PILToTensor()])

    def __call__(self, picture: Any) -> list[torch.Tensor]:
        return [self.resize(picture)]

    def finish(self, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        """Every view of the one collated ``uint8`` batch, on the device it is on."""
        (images,) = batches
        # full precision under the loop's autocast, and no graph: the views are inputs
        with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
            return [batch_view(images, self.image, view) for view in self.views]

