"""The vision modality: decode images, transform them with torchvision v2 (eval transform and
training crops), batch, mask patches, and build ViT / ViT-MAE configs; :class:`VisionModality`
is the ``vision`` entry of ``MODALITIES``.
"""

from __future__ import annotations

import io
from typing import Any

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2
from transformers import CLIPImageProcessor, PreTrainedModel, ViTConfig, ViTMAEConfig, ViTModel
from transformers.image_utils import PILImageResampling

from mmssl.augment.batched import BatchedViews
from mmssl.augment.vision import MultiView, collate_views, view_transform
from mmssl.modalities.base import Modality, Tokens, ViewRequest, register
from mmssl.modalities.configs import TowerConfig, make_config, preset_fields
from mmssl.modalities.pooling import pool
from mmssl.recipe import ImageConfig, ModelConfig, Recipe

#: ViT sizes; ``nano`` is for tests and the CPU quickstart, the rest follow DeiT/ViT.
VIT_PRESETS: dict[str, dict[str, int]] = {
    "nano": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256),
    "tiny": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768),
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}

#: MAE's light decoder, scaled with the encoder.
MAE_DECODER_PRESETS: dict[str, dict[str, int]] = {
    "nano": dict(decoder_hidden_size=64, decoder_num_hidden_layers=2,
                 decoder_num_attention_heads=4, decoder_intermediate_size=256),
    "tiny": dict(decoder_hidden_size=128, decoder_num_hidden_layers=4,
                 decoder_num_attention_heads=4, decoder_intermediate_size=512),
    "small": dict(decoder_hidden_size=256, decoder_num_hidden_layers=4,
                  decoder_num_attention_heads=8, decoder_intermediate_size=1024),
    "base": dict(decoder_hidden_size=512, decoder_num_hidden_layers=8,
                 decoder_num_attention_heads=16, decoder_intermediate_size=2048),
}


def _image_fields(image: ImageConfig) -> dict[str, Any]:
    return {"image_size": image.size, "num_channels": image.channels}


def vit_config(model: ModelConfig, image: ImageConfig) -> ViTConfig:
    """ViT encoder (``ViTModel``), for contrastive, distillation and data2vec tasks."""
    base = {**preset_fields(VIT_PRESETS, model.preset, "ViT"), **_image_fields(image)}
    return make_config(ViTConfig, base, model.config)


def vit_mae_config(model: ModelConfig, image: ImageConfig) -> ViTMAEConfig:
    """ViT-MAE encoder plus light decoder (``ViTMAEForPreTraining``)."""
    base = {
        **preset_fields(VIT_PRESETS, model.preset, "ViT"),
        **preset_fields(MAE_DECODER_PRESETS, model.preset, "MAE decoder"),
        **_image_fields(image),
    }
    return make_config(ViTMAEConfig, base, model.config)


def decode_image(value: Any, channels: int = 3) -> Image.Image:
    """A PIL image from a ``datasets`` Image cell (decoded, or ``{"bytes", "path"}``)."""
    if isinstance(value, dict):
        if value.get("bytes"):
            image = Image.open(io.BytesIO(value["bytes"]))
        elif value.get("path"):
            image = Image.open(value["path"])
        else:
            raise ValueError("empty image cell (no bytes and no path)")
    elif isinstance(value, Image.Image):
        image = value
    elif value is None:
        raise ValueError("missing image (None)")
    else:
        raise ValueError(f"cannot read an image from {type(value).__name__}")
    image.load()
    return image.convert("RGB" if channels == 3 else "L")


def image_transform(image: ImageConfig, train: bool) -> v2.Compose:
    """Random resized crop + flip for training, resize + center crop for evaluation."""
    if train and image.random_resized_crop:
        steps: list[Any] = [
            v2.RandomResizedCrop(image.size, scale=tuple(image.crop_scale), antialias=True)
        ]
    else:
        steps = [v2.Resize(image.size, antialias=True), v2.CenterCrop(image.size)]
    if train and image.horizontal_flip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(image.mean[: image.channels], image.std[: image.channels]),
    ]
    return v2.Compose(steps)


def vit_processor(image: ImageConfig) -> CLIPImageProcessor:
    """The eval transform as a transformers image processor: resize the short side (bilinear),
    center-crop, normalize. CLIP's processor is the one that crops; ViT's would stretch
    non-square images to a square, unlike evaluation."""
    return CLIPImageProcessor(
        do_resize=True,
        size={"shortest_edge": image.size},
        resample=PILImageResampling.BILINEAR,
        do_center_crop=True,
        crop_size={"height": image.size, "width": image.size},
        do_normalize=True,
        image_mean=image.mean[: image.channels],
        image_std=image.std[: image.channels],
        do_convert_rgb=image.channels == 3,
    )


class VisionAdapter:
    """Preprocess and collate image examples for one recipe's image settings.

    Evaluation preprocesses with the image processor an export carries (``vit_processor``),
    so features a transformers user computes from an export equal ``mmssl eval``'s.
    """

    def __init__(self, image: ImageConfig) -> None:
        self.image = image
        self.train_transform = image_transform(image, train=True)
        self.processor = vit_processor(image)

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        picture = decode_image(example["image"], self.image.channels)
        if train:
            pixels = self.train_transform(picture)
        else:
            pixels = self.processor(images=picture, return_tensors="pt")["pixel_values"][0]
        out = {"pixel_values": pixels}
        if "label" in example:
            out["label"] = example["label"]
        return out

    @staticmethod
    def collate(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {"pixel_values": torch.stack([ex["pixel_values"] for ex in examples])}
        if examples and "label" in examples[0]:
            batch["labels"] = torch.tensor([ex["label"] for ex in examples])
        return batch


def random_patch_noise(
    batch_size: int, num_patches: int, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per-example uniform noise whose argsort picks which patches stay (MAE's masking)."""
    return torch.rand(batch_size, num_patches, device=device, generator=generator)



_VIT_FIELDS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
    "image_size", "patch_size", "num_channels", "qkv_bias",
)


def as_vit(model: PreTrainedModel, pooler: bool) -> ViTModel:
    """A ``ViTModel`` with the weights of a ViT or ViT-MAE encoder (MAE's encoder is a ViT).

    The pooler (dense + tanh on the CLS token, what ``VisionTextDualEncoderModel`` reads)
    is added fresh when asked for and absent, and dropped when not asked for.
    """
    if isinstance(model, ViTModel) and (model.pooler is not None) == pooler:
        return model
    config = ViTConfig(**{name: getattr(model.config, name) for name in _VIT_FIELDS})
    vit = ViTModel(config, add_pooling_layer=pooler)
    result = vit.load_state_dict(model.state_dict(), strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("pooler.")]
    unexpected = [k for k in result.unexpected_keys if not k.startswith("pooler.")]
    if missing or unexpected:
        raise ValueError(
            f"cannot read a {type(model).__name__} as a ViT encoder "
            f"(missing: {missing[:3]}, unexpected: {unexpected[:3]})"
        )
    return vit


@register
class VisionModality(Modality):
    """Images from the ``image`` column: the eval transform an export's image processor
    repeats, torchvision v2 crops as training views (crops of one kind share a size, so a
    view batch is one stacked ``[batch, C, H, W]``), and ViT/ResNet/ConvNeXt encoders.
    Masked prediction runs on ViT's patch tokens (the CLS token is left out of the targets):
    data2vec 1.0 replaces masked patches by ViT's mask token, 2.0 drops them."""

    name = "vision"
    column = "image"
    default_backbone = "vit"
    default_pooling = "cls"
    tower_pooling = "pooler"
    tower_poolings = ("pooler", "cls", "mean")
    views_on_device = True
    token_grid_dims = 2

    def __init__(self, recipe: Recipe, backbone: str | None = None, views: ViewRequest | None = None,
                 corpus: Any = None) -> None:
        super().__init__(recipe, backbone, views)
        self.adapter = VisionAdapter(recipe.data.image)
        if views is not None:
            kinds = [views.image] * views.count + [views.local_image] * views.num_local
            image = recipe.data.image
            # with augment_on: device the workers only resize; the views are made in view_batches
            self.views: MultiView | BatchedViews = (
                BatchedViews(image, kinds) if image.augment_on == "device"
                else MultiView([view_transform(image, v) for v in kinds]))

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        return self.adapter.preprocess(example, train)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.adapter.collate(items)

    def augment(self, example: dict[str, Any]) -> list[torch.Tensor]:
        return self.views(decode_image(example[self.column], self.recipe.data.image.channels))

    def collate_views(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate_views(examples)

    def view_batches(self, batch: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        count = sum(1 for k in batch if k.startswith("views_"))
        views = self.views.finish([batch[f"views_{k}"] for k in range(count)])
        return [{"pixel_values": v} for v in views]

    def tower_encoder(self, cfg: TowerConfig, pooling: str) -> nn.Module:
        config = vit_config(ModelConfig(cfg.preset, dict(cfg.config)), self.recipe.data.image)
        return ViTModel(config, add_pooling_layer=pooling == "pooler")

    def adopt_tower_encoder(self, model: nn.Module, pooling: str) -> nn.Module:
        model, image = as_vit(model, pooler=pooling == "pooler"), self.recipe.data.image
        if (model.config.image_size, model.config.num_channels) != (image.size, image.channels):
            raise ValueError(
                f"task.towers.vision.init_from: the model takes {model.config.image_size}px images "
                f"with {model.config.num_channels} channels; set data.image.size and "
                f"data.image.channels to match (now {image.size}, {image.channels})"
            )
        return model

    def token_encoder(self, mask_token: bool) -> ViTModel:
        return ViTModel(vit_config(self.recipe.model, self.recipe.data.image), add_pooling_layer=False,
                        use_mask_token=mask_token)

    def token_mask(self, encoder: nn.Module, batch: dict[str, torch.Tensor], cfg: Any) -> torch.Tensor:
        """``cfg.mask_ratio`` of each image's patches, uniformly at random."""
        pixels, num_patches = batch["pixel_values"], encoder.embeddings.patch_embeddings.num_patches
        noise = random_patch_noise(pixels.shape[0], num_patches, pixels.device)
        count = int(round(num_patches * cfg.mask_ratio))
        return noise.argsort(dim=1).argsort(dim=1) < count

    def masked_token_states(self, encoder: nn.Module, batch: dict[str, torch.Tensor],
                            mask: torch.Tensor) -> torch.Tensor:
        return encoder(pixel_values=batch["pixel_values"], bool_masked_pos=mask).last_hidden_state[:, 1:]

    def token_states(self, encoder: nn.Module, batch: dict[str, torch.Tensor]
                     ) -> tuple[tuple[torch.Tensor, ...], None]:
        states = encoder(pixel_values=batch["pixel_values"], output_hidden_states=True).hidden_states
        return tuple(h[:, 1:] for h in states[1:]), None

    def token_features(self, encoder: nn.Module, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
        return pool(encoder(pixel_values=batch["pixel_values"]).last_hidden_state, pooling)

    def token_embeddings(self, encoder: nn.Module, batch: dict[str, torch.Tensor]) -> Tokens:
        """Patch + position embeddings of the whole image; the CLS token is the kept prefix."""
        embedded = encoder.embeddings(batch["pixel_values"].to(encoder.embeddings.cls_token.dtype))
        return embedded[:, 1:], None, embedded[:, :1]

    def encode_tokens(self, encoder: nn.Module, x: torch.Tensor, attend: torch.Tensor,
                      prefix: torch.Tensor | None) -> torch.Tensor:
        hidden = torch.cat([prefix, x], dim=1)
        for layer in encoder.layers:
            hidden = layer(hidden)
        return encoder.layernorm(hidden)[:, 1:]

    def token_grid(self, length: int) -> tuple[int, ...]:
        side = int(round(length ** 0.5))
        return (side, side)
