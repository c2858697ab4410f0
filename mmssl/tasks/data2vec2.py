"""data2vec 2.0: data2vec's targets at a fraction of its cost (Baevski et al., 2022).

What changes from ``data2vec`` (1.0), whose teacher, targets, EMA schedule, evaluation and
export this task reuses:

- the student encodes only the visible patches, tokens or frames (as MAE does): the
  modality's embeddings run on the whole input (so positions are those of the full
  sequence), then only the kept positions go through the transformer layers;
- a light convolutional decoder (2D over the patch grid for images, 1D over tokens or
  frames) fills the masked positions with a learned mask embedding and predicts the
  teacher's averaged, instance-normalised top-K layer outputs there;
- ``num_masks`` different masks of each example share one teacher forward pass
  (multi-mask training), so the teacher's cost is paid once per example, not per mask;
- masks are blocks (``mmssl.modalities.block_mask``): for images the *kept* patches come in
  blocks (inverse block masking), for text and audio masked and kept spans alternate;
- the teacher is the EMA of the student encoder only (the decoder has no teacher copy).

The same code path serves every modality: each says how to embed an input
(``Modality.token_embeddings``), how to run the encoder's layers on a subset of positions
(``encode_tokens``) and what grid its positions lie on (``token_grid``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmssl.losses.data2vec import data2vec_loss, data2vec_targets
from mmssl.modalities.block_mask import VisibleSet, block_noise, gather_positions, visible_set
from mmssl.registry import TASKS
from mmssl.tasks.base import TaskOutput
from mmssl.tasks.configs import Data2Vec2Config
from mmssl.tasks.data2vec import Data2VecTask


class _ConvBlock(nn.Module):
    """Grouped convolution, layer norm over channels, GELU: one data2vec 2.0 decoder block."""

    def __init__(self, dim: int, kernel: int, groups: int, spatial_dims: int) -> None:
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv1d
        self.conv = conv(dim, dim, kernel, padding=kernel // 2, groups=groups)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).movedim(1, -1)
        return nn.functional.gelu(self.norm(y)).movedim(-1, 1)


class ConvDecoder(nn.Module):
    """Puts the student's visible states back on the full grid, a learned mask embedding
    elsewhere, and predicts a target vector at every position with residual conv blocks."""

    def __init__(self, dim: int, cfg: Data2Vec2Config, spatial_dims: int) -> None:
        super().__init__()
        self.project_in = nn.Linear(dim, cfg.decoder_dim)
        self.mask_embedding = nn.Parameter(torch.randn(cfg.decoder_dim) * 0.02)
        self.blocks = nn.ModuleList(
            _ConvBlock(cfg.decoder_dim, cfg.decoder_kernel, cfg.decoder_groups, spatial_dims)
            for _ in range(cfg.decoder_layers)
        )
        self.project_out = nn.Linear(cfg.decoder_dim, dim)

    def fill(self, hidden: torch.Tensor, kept: VisibleSet, valid: torch.Tensor | None) -> torch.Tensor:
        """``[n, length, decoder_dim]``: projected states where seen, the mask embedding
        elsewhere, zeros on padding."""
        n, length = kept.visible.shape
        states = torch.where(kept.attend.unsqueeze(-1), self.project_in(hidden), self.mask_embedding.to(hidden.dtype))
        full = self.mask_embedding.to(states.dtype).expand(n, length, -1)
        full = full.scatter(1, kept.index.unsqueeze(-1).expand_as(states), states)
        return full if valid is None else full * valid.unsqueeze(-1).to(full.dtype)

    def forward(self, hidden: torch.Tensor, kept: VisibleSet, grid: tuple[int, ...],
                valid: torch.Tensor | None = None) -> torch.Tensor:
        full = self.fill(hidden, kept, valid)
        x = full.transpose(1, 2).reshape(full.shape[0], full.shape[2], *grid)
        for block in self.blocks:
            x = x + block(x)
        return self.project_out(x.flatten(2).transpose(1, 2))


def repeat_masks(tensor: torch.Tensor | None, times: int) -> torch.Tensor | None:
    """Each example ``times`` times in a row: the layout of the multi-mask batch."""
    return None if tensor is None else tensor.repeat_interleave(times, dim=0)


@TASKS.register("data2vec2", config=Data2Vec2Config)
class Data2Vec2Task(Data2VecTask):
    """data2vec 2.0: visible-only student, conv decoder, multi-mask, one teacher pass."""

    MASK_TOKEN = False  # masked positions are dropped, not replaced

    def build_head(self, hidden: int) -> nn.Module:
        return ConvDecoder(hidden, self.cfg, spatial_dims=self.modality.token_grid_dims)

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        return self.modality.preprocess(example, train)

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.modality.collate(examples)

    def draw_masks(self, n: int, length: int, valid: torch.Tensor | None, device: torch.device) -> VisibleSet:
        """The kept positions of ``n`` rows (examples already repeated ``num_masks`` times)."""
        noise = block_noise(n, self.modality.token_grid(length), self.cfg.mask_block, device)
        return visible_set(noise, self.cfg.mask_ratio, valid)

    def forward(self, batch: dict[str, torch.Tensor]) -> TaskOutput:
        cfg, copies = self.cfg, self.cfg.num_masks
        with torch.no_grad():
            states, valid = self.modality.token_states(self.teacher, batch)
            targets = data2vec_targets(states, cfg.top_k, "instance", valid)
        tokens, valid, prefix = self.modality.token_embeddings(self.encoder, batch)
        n, length = tokens.shape[:2]
        valid = repeat_masks(valid, copies)
        kept = self.draw_masks(n * copies, length, valid, tokens.device)
        visible = gather_positions(repeat_masks(tokens, copies), kept.index)
        hidden = self.modality.encode_tokens(self.encoder, visible, kept.attend, repeat_masks(prefix, copies))
        prediction = self.regression_head(hidden, kept, self.modality.token_grid(length), valid)
        masked = ~kept.visible if valid is None else ~kept.visible & valid
        if not bool(masked.any()):  # every example too short to mask: a zero loss keeps the graph
            return TaskOutput(prediction.sum() * 0.0, {"masked_fraction": masked.float().mean()})
        target = repeat_masks(targets, copies)[masked]
        loss = data2vec_loss(prediction[masked], target, cfg.loss_beta)
        with torch.no_grad():
            target_std = target.std(dim=0).mean()
        return TaskOutput(loss, {"masked_fraction": masked.float().mean(), "target_std": target_std})
