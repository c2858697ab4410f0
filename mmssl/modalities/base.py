"""What a modality is: one object that turns dataset cells of one kind into encoder inputs.

A :class:`Modality` owns everything about one kind of input that tasks, CLIP towers, eval
and export need: the dataset column it reads, dataset-level preparation (tokenizing),
decoding and validating one example (a ``ValueError`` there is a bad example, judged by
``data.on_bad_example``), eval preprocessing, augmented training views, collate and
padding, joining several view batches for one forward pass, building its encoder from the
backbone registry (``model.backbone``, else ``default_backbone``), pooled features and the
processor an export carries; a modality that serves masked prediction (data2vec 1.0 and
2.0) also builds the per-token encoder those tasks need, masks its batches and gives
per-token hidden states with their validity mask (the ``token_*`` methods). Each ``mmssl/modalities/<name>.py`` defines one and registers
it in ``MODALITIES``; tasks look it up by name (:func:`build_modality`), so a new modality
is one file (docs/architecture.md, "Add a modality"; tests/test_toy_modality.py).

A modality is built per recipe: ``Modality(recipe, backbone=None, views=None, corpus=None)``.
``views`` (a :class:`ViewRequest`) is given by the joint-embedding tasks only; ``corpus``
is what the modality may learn its preprocessing from (the text modality trains a tokenizer
on it when the recipe names none).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from mmssl.backbones.base import Backbone, get_backbone
from mmssl.modalities.configs import TowerConfig
from mmssl.recipe import ModelConfig, Recipe
from mmssl.registry import MODALITIES


@dataclass(frozen=True)
class ViewRequest:
    """The training views a joint-embedding task asks for: ``count`` global views, then
    ``num_local`` local ones. ``image``/``local_image`` are the vision modality's crop
    settings (``mmssl.augment.vision.ViewConfig``), which each task derives from its own
    ``task:`` fields; other modalities read their view settings from the recipe."""

    count: int = 2
    num_local: int = 0
    image: Any = None
    local_image: Any = None


#: data2vec 2.0's embedded input: tokens, which are real (or ``None``), an always-kept prefix.
Tokens = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]


def split_views(batch: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """``views_<k>_<key>`` entries as one ``{key: ...}`` batch per view ``k``."""
    count = len({name.split("_")[1] for name in batch if name.startswith("views_")})
    return [{name[len(f"views_{k}_"):]: value for name, value in batch.items() if name.startswith(f"views_{k}_")}
            for k in range(count)]


class Modality:
    """One kind of input: its column, examples, views, batches, encoder and features.

    Subclasses set the class attributes and implement :meth:`preprocess`, :meth:`collate`
    and :meth:`augment`; the rest has defaults that fit dict batches of padded tensors.
    """

    #: the registry name (``task.modality``, ``task.modalities``).
    name: ClassVar[str] = ""
    #: the dataset column (after ``data.columns`` renames) that holds one example.
    column: ClassVar[str] = ""
    #: the backbone used when the recipe names none.
    default_backbone: ClassVar[str] = ""
    #: the joint-embedding tasks' pooling when ``task.pooling`` is not set.
    default_pooling: ClassVar[str] = "mean"
    #: a CLIP tower's pooling for ``pooling: auto``, and the poolings a tower offers.
    tower_pooling: ClassVar[str] = "mean"
    tower_poolings: ClassVar[tuple[str, ...]] = ("mean", "cls")
    #: whether joint-embedding tasks may ask for local (smaller) views.
    local_views: ClassVar[bool] = True
    #: whether it can make its training views on the device (``data.image.augment_on: device``).
    views_on_device: ClassVar[bool] = False
    #: padding value per batch key when view batches of different widths are joined.
    pad_values: ClassVar[dict[str, float]] = {}
    #: dimensions of the grid its tokens lie on (2 for image patches), for data2vec 2.0's decoder.
    token_grid_dims: ClassVar[int] = 1

    def __init__(self, recipe: Recipe, backbone: str | None = None, views: ViewRequest | None = None,
                 corpus: Callable[[], Iterable[Any]] | None = None) -> None:
        self.recipe = recipe
        self.backbone: Backbone = get_backbone(backbone or self.default_backbone, self.name)
        if views is not None and views.num_local and not self.local_views:
            raise ValueError(f"task.num_local_crops={views.num_local}: the {self.name} modality has no "
                             f"local views; set task.num_local_crops: 0")
        self.view_request = views

    # ------------------------------------------------------------------ examples

    def prepare(self, dataset: Any) -> tuple[Any, int]:
        """One-off dataset-level work before batching; returns the data and how many bad
        examples it dropped (``data.on_bad_example: skip``)."""
        return dataset, 0

    def example_lengths(self, dataset: Any) -> list[int] | None:
        """Size of each prepared example, for ``data.group_by_length`` (``None``: unknown)."""
        return None

    def preprocess(self, example: dict[str, Any], train: bool = True) -> dict[str, Any]:
        """Model inputs of ``example[self.column]`` (its ``label`` passed through); a bad
        value raises ``ValueError``. ``train=False`` is eval preprocessing: no randomness."""
        raise NotImplementedError

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Batch preprocessed items: stack or pad (with an attention mask); ``labels`` if given."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training views

    def augment(self, example: dict[str, Any]) -> list[Any]:
        """The augmented views of one example that ``view_request`` asks for (global first)."""
        raise NotImplementedError

    def collate_views(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """``{"views": [...]}`` examples as one batch: view ``k`` collated under ``views_<k>_``."""
        batch: dict[str, torch.Tensor] = {}
        for k in range(len(examples[0]["views"])):
            for key, value in self.collate([ex["views"][k] for ex in examples]).items():
                batch[f"views_{k}_{key}"] = value
        return batch

    def view_batches(self, batch: dict[str, torch.Tensor]) -> list[Any]:
        """One batch per view, in the order they were made."""
        return split_views(batch)

    def join(self, views: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Several view batches as one (split the output with ``chunk``): entries of different
        widths are right-padded to the widest with ``pad_values[key]`` (0 if unnamed)."""
        joined = {}
        for key in views[0]:
            width = max(v[key].shape[-1] for v in views)
            pad = self.pad_values.get(key, 0)
            joined[key] = torch.cat([nn.functional.pad(v[key], (0, width - v[key].shape[-1]), value=pad)
                                     for v in views])
        return joined

    # ------------------------------------------------------------------ model

    def build_encoder(self, model: ModelConfig | None = None) -> nn.Module:
        """A fresh encoder from the backbone registry (``model`` defaults to the recipe's)."""
        return self.backbone.build(model or self.recipe.model, self.recipe.data)

    def pooled(self, encoder: nn.Module, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
        """``[batch, hidden]`` features of a collated batch; ``pooler`` reads the model's pooler."""
        if pooling == "pooler":
            return encoder(**{k: v for k, v in batch.items() if k != "labels"}).pooler_output
        return self.backbone.pooled(encoder, batch, pooling)

    def hidden_size(self, encoder: nn.Module) -> int:
        return self.backbone.hidden_size(encoder)

    def processor(self) -> Any:
        """The image processor, tokenizer or feature extractor an export carries."""
        return self.backbone.processor(self.recipe.data, None)

    @property
    def pipeline_tag(self) -> str | None:
        """The Hub pipeline tag of an export whose root is this modality's encoder."""
        return self.backbone.pipeline_tag

    # ------------------------------------------------------------------ CLIP towers

    def tower_encoder(self, cfg: TowerConfig, pooling: str) -> nn.Module:
        """A fresh tower encoder from ``task.towers.<name>`` (preset and config overrides)."""
        return self.build_encoder(ModelConfig(cfg.preset, dict(cfg.config)))

    def adopt_tower_encoder(self, model: nn.Module, pooling: str) -> nn.Module:
        """A loaded model (``init_from``) as this modality's tower encoder."""
        return model

    def tower_features(self, encoder: nn.Module, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
        """A tower's pooled features (as :meth:`pooled` unless a modality's towers differ)."""
        return self.pooled(encoder, batch, pooling)

    # ------------------------------------------------------------------ masked prediction (data2vec)
    # Per-token encoders, masks and hidden states. A modality without them cannot serve
    # data2vec: each default raises the one-line error of :meth:`no_masked_prediction`.

    def no_masked_prediction(self) -> ValueError:
        return ValueError(f"task.modality={self.name}: the {self.name} modality has no per-token masking, so "
                          f"it cannot serve masked prediction (data2vec); use a joint-embedding task (simclr)")

    def token_encoder(self, mask_token: bool) -> nn.Module:
        """A fresh encoder with per-token outputs; ``mask_token``: the student replaces masked
        positions by a learned token (data2vec 1.0), else masked positions are dropped (2.0)."""
        raise self.no_masked_prediction()

    def masked_preprocess(self, example: dict[str, Any]) -> dict[str, Any]:
        """A training example for masked prediction (what masking in the collator needs)."""
        return self.preprocess(example, train=True)

    def masked_collate(self, items: list[dict[str, Any]], cfg: Any) -> dict[str, torch.Tensor]:
        """A batch for masked prediction; masks drawn here (from ``task:`` settings ``cfg``)
        are read back by :meth:`token_mask`."""
        return self.collate(items)

    def token_mask(self, encoder: nn.Module, batch: dict[str, torch.Tensor], cfg: Any) -> torch.Tensor:
        """``[batch, tokens]`` bool: the positions data2vec 1.0's student sees masked."""
        raise self.no_masked_prediction()

    def masked_token_states(self, encoder: nn.Module, batch: dict[str, torch.Tensor],
                            mask: torch.Tensor) -> torch.Tensor:
        """``[batch, tokens, hidden]``: the last layer of ``encoder`` on the masked input."""
        raise self.no_masked_prediction()

    def token_states(self, encoder: nn.Module, batch: dict[str, torch.Tensor]
                     ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
        """Every layer's ``[batch, tokens, hidden]`` output on the whole input, and which
        tokens are real (``None``: all)."""
        raise self.no_masked_prediction()

    def token_features(self, encoder: nn.Module, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
        """``[batch, hidden]`` pooled features of a :meth:`token_encoder` (eval)."""
        raise self.no_masked_prediction()

    def token_embeddings(self, encoder: nn.Module, batch: dict[str, torch.Tensor]) -> Tokens:
        """data2vec 2.0: ``(embedded tokens, valid or None, prefix or None)`` of the whole
        input, before the transformer layers (``prefix``: tokens always kept, e.g. CLS)."""
        raise self.no_masked_prediction()

    def encode_tokens(self, encoder: nn.Module, x: torch.Tensor, attend: torch.Tensor,
                      prefix: torch.Tensor | None) -> torch.Tensor:
        """data2vec 2.0: the transformer layers on the kept tokens ``x`` (``attend``: real ones)."""
        raise self.no_masked_prediction()

    def token_grid(self, length: int) -> tuple[int, ...]:
        """The grid ``length`` tokens lie on (``token_grid_dims`` sides)."""
        return (length,)


def build_modality(name: str, recipe: Recipe, **kwargs: Any) -> Modality:
    """The modality ``name`` from ``MODALITIES``, built for ``recipe`` (see :class:`Modality`)."""
    return MODALITIES.get(name).obj(recipe, **kwargs)


def register(cls: type[Modality]) -> type[Modality]:
    """Class decorator: add a :class:`Modality` subclass to ``MODALITIES`` under its ``name``."""
    return MODALITIES.register(cls.name)(cls)
