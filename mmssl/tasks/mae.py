"""MAE: mask most image patches, encode only the visible ones, reconstruct the rest.

The model is transformers' ``ViTMAEForPreTraining``: its encoder drops the masked patches
before the transformer (so compute scales with the visible count), its light decoder
predicts every patch, and the loss is the mean squared error on (per-patch normalized)
pixels of the masked patches only. The task draws the masking noise itself so that masks
are new every step and reproducible from the seed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import CLIPImageProcessor, ViTMAEForPreTraining

from mmssl.modalities.vision import VisionAdapter, random_patch_noise, vit_mae_config, vit_processor
from mmssl.recipe import Recipe
from mmssl.registry import TASKS
from mmssl.tasks.base import PretextTask, TaskOutput
from mmssl.tasks.configs import MAEConfig


def init_sincos_tables(model: ViTMAEForPreTraining) -> None:
    """Fill the fixed 2D sin-cos position tables (and the mask token) that MAE relies on.

    transformers 5.x leaves both position tables at zero when the model is built from a
    config (its weight init zeroes the decoder's and skips the encoder's), which removes all
    positional information: the model cannot tell masked patches apart and the loss stalls.
    """
    embeddings = model.vit.embeddings
    if embeddings.position_embeddings.abs().sum() > 0:
        return
    embeddings.patch_embeddings.projection.__dict__.pop("_is_hf_initialized", None)
    embeddings.initialize_weights()
    model.decoder.initialize_weights(embeddings.patch_embeddings.num_patches)


@TASKS.register("mae", config=MAEConfig)
class MAETask(PretextTask):
    """Masked autoencoder on image patches (He et al., 2021)."""

    modalities = ("vision",)
    required_columns = ("image",)

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        cfg: MAEConfig = recipe.task
        config = vit_mae_config(recipe.model, recipe.data.image)
        config.mask_ratio = cfg.mask_ratio
        config.norm_pix_loss = cfg.norm_pix_loss
        self.adapter = VisionAdapter(recipe.data.image)
        self.model = ViTMAEForPreTraining(config)
        init_sincos_tables(self.model)

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        out = self.adapter.preprocess(example, train)
        if train:  # the mask belongs to the example (its seed), not to the process drawing it,
            # so any number of processes with the same global batch masks the same patches
            out["noise"] = random_patch_noise(1, self.num_patches, torch.device("cpu"))[0]
        return out

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.adapter.collate(examples)
        if examples and "noise" in examples[0]:
            batch["noise"] = torch.stack([ex["noise"] for ex in examples])
        return batch

    @property
    def num_patches(self) -> int:
        return self.model.vit.embeddings.patch_embeddings.num_patches

    def forward(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        pixels = batch["pixel_values"]
        noise = batch.get("noise")
        if noise is None:
            noise = random_patch_noise(pixels.shape[0], self.num_patches, pixels.device)
        out = self.model(pixel_values=pixels, noise=noise)
        return TaskOutput(out.loss, {"mask_ratio": out.mask.float().mean()})

    @property
    def backbone(self) -> nn.Module:
        return self.model.vit

    def embed(self, batch: dict[str, torch.Tensor], pooling: str = "mean") -> torch.Tensor:
        """Features of all patches: the mask ratio is set to zero while embedding."""
        encoder = self.model.vit
        saved = encoder.config.mask_ratio
        encoder.config.mask_ratio = 0.0
        try:
            hidden = encoder(pixel_values=batch["pixel_values"]).last_hidden_state
        finally:
            encoder.config.mask_ratio = saved
        return hidden[:, 0] if pooling == "cls" else hidden[:, 1:].mean(dim=1)

    def export_model(self) -> ViTMAEForPreTraining:
        return self.model

    def processor(self) -> CLIPImageProcessor:
        return vit_processor(self.recipe.data.image)
