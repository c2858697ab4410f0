"""AdamW and the learning-rate schedule, built from the recipe's ``train:`` section."""

from __future__ import annotations

import warnings

import torch
from torch import nn
from transformers import get_scheduler

from mmssl.recipe import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norms, embeddings' position tables and tokens (as MAE/BERT)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = param.ndim < 2 or name.endswith(".bias") or "token" in name or "position" in name
        (no_decay if skip else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW, fused on CUDA where the kernels are fastest."""
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=(cfg.betas[0], cfg.betas[1]),
        fused=device.type == "cuda",
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Warmup then cosine (to ``min_lr_ratio``), linear or constant decay.

    Warns when the warmup is not shorter than the run: the learning rate would never reach
    ``train.lr`` (a recipe's warmup left in place while ``max_steps`` was cut for a test).
    """
    if cfg.warmup_steps >= total_steps:
        warnings.warn(
            f"train.warmup_steps={cfg.warmup_steps} is not below the run's {total_steps} steps: "
            "the learning rate never reaches train.lr; lower train.warmup_steps",
            stacklevel=2,
        )
    if cfg.scheduler == "cosine" and cfg.min_lr_ratio > 0:
        return get_scheduler(
            "cosine_with_min_lr",
            optimizer,
            num_warmup_steps=cfg.warmup_steps,
            num_training_steps=total_steps,
            scheduler_specific_kwargs={"min_lr_rate": cfg.min_lr_ratio},
        )
    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[cfg.scheduler]
    return get_scheduler(
        name, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=total_steps
    )
