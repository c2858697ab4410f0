"""One registry type for everything that is chosen by name in a recipe.

Tasks, backbones, modalities, data sources and heads each get a :class:`Registry`. Each registry has a
declarative index (the ``declare`` calls at the end of this file): per name, the module that
registers it, a one-line help and, for tasks, the torch-free config class. ``mmssl list``
and recipe validation read only the index, so they never import torch; ``get`` imports the
entry's module on first use, whose decorator (``@TASKS.register(...)``) fills in the object.
A test checks that the index and the registrations agree, so the two cannot drift.

Installed packages extend the registries through the ``mmssl.plugins`` entry-point group:
each entry point names a module that registers its tasks, backbones or modalities by
decorator. Plugins are imported once, the first time a name is not found or a registry is
listed, so ``mmssl --help`` and recipes that use only built-in names never import them.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


class RegistryError(KeyError):
    """An unknown name was asked for; the message lists what exists."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    config: type | None
    help: str


@dataclass(frozen=True)
class Declared:
    """An index line: what ``mmssl list`` shows and where the entry lives, known without
    importing it. ``config`` is ``"module:ClassName"`` of a module that imports no torch."""

    name: str
    module: str
    help: str
    config: str | None = None
    #: what recipe validation needs to know without importing the entry; backbones:
    #: ``{"modality": ..., "tasks": (...)}``, the same as their ``Backbone`` says.
    facts: dict[str, Any] = field(default_factory=dict)


PLUGIN_GROUP = "mmssl.plugins"


@dataclass
class Plugins:
    """What the ``mmssl.plugins`` entry points gave: imported once, failures kept as one line each."""

    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    scanned: bool = False


PLUGINS = Plugins()


def load_plugins() -> Plugins:
    """Import every installed ``mmssl.plugins`` entry point, once. A plugin that fails to
    import is skipped with a one-line warning, so one broken package cannot stop every run."""
    if PLUGINS.scanned:
        return PLUGINS
    PLUGINS.scanned = True
    for point in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        try:
            point.load()
        except Exception as exc:  # a plugin's own bug: reported, not raised
            PLUGINS.failed[point.name] = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"plugin {point.name!r} ({point.value}) skipped: "
                          f"{PLUGINS.failed[point.name]}", stacklevel=2)
        else:
            PLUGINS.loaded.append(point.name)
    return PLUGINS


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


class Registry:
    """A name -> object map with a decorator to fill it, a lazy index and helpful misses."""

    def __init__(self, kind: str, plural: str | None = None, facts: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        #: the attributes of a registered object that stand for its index facts when it has
        #: no index line (a plugin's or a test's entry)
        self.facts = facts
        self._entries: dict[str, Entry] = {}
        self._index: dict[str, Declared] = {}

    def declare(self, name: str, module: str, help: str, config: str | None = None, **facts: Any) -> None:
        """Add an index line: ``name`` is registered when ``module`` is imported."""
        self._index[name] = Declared(name, module, help, config, facts)

    def register(
        self, name: str, *, config: type | None = None, help: str = ""
    ) -> Callable[[Any], Any]:
        """Decorator: ``@TASKS.register("mae", config=MAEConfig)``."""

        def add(obj: Any) -> Any:
            if name in self._entries and self._entries[name].obj is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            declared = self._index.get(name)
            # a class's or function's own docstring; an instance's would be its class's
            doc = obj.__doc__ if inspect.isclass(obj) or inspect.isroutine(obj) else None
            first_line = (doc or "").strip().split("\n")[0]
            text = help or (declared.help if declared else first_line)
            self._entries[name] = Entry(name, obj, config, text)
            return obj

        return add

    def unregister(self, name: str) -> None:
        """Remove a registered entry (a plugin's or a test's); the index is left as it is."""
        self._entries.pop(name, None)

    def _unknown(self, name: str) -> RegistryError:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return RegistryError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(names) or 'none'})")

    def _known(self, name: str) -> bool:
        """Whether the index or a registration has ``name``; plugins are loaded before saying no."""
        if name in self._index or name in self._entries:
            return True
        load_plugins()
        return name in self._entries

    def get(self, name: str) -> Entry:
        """The registered entry, importing its module first if only the index knows it."""
        if not self._known(name):
            raise self._unknown(name)
        if name not in self._entries and name in self._index:
            importlib.import_module(self._index[name].module)
            if name not in self._entries:
                raise RuntimeError(f"{self._index[name].module} did not register {self.kind} {name!r}")
        return self._entries[name]

    def describe(self, name: str) -> Declared:
        """The index line of ``name`` (or of a registered, undeclared entry), without imports
        (but a plugin's, when only a plugin has it)."""
        self._known(name)
        if name in self._index:
            return self._index[name]
        if name in self._entries:
            entry = self._entries[name]
            facts = {key: getattr(entry.obj, key) for key in self.facts}
            return Declared(name, getattr(entry.obj, "__module__", ""), entry.help, facts=facts)
        raise self._unknown(name)

    def config_class(self, name: str) -> type | None:
        """The entry's config class, imported from its torch-free module when declared."""
        declared = self.describe(name)
        if declared.config:
            return _resolve(declared.config)
        return self.get(name).config

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._known(name)

    def __iter__(self) -> Iterator[Declared]:
        return (self.describe(name) for name in self.names())

    def names(self) -> list[str]:
        """Every name: the index, what is registered, and what the plugins register."""
        load_plugins()
        return sorted({*self._index, *self._entries})

    def registered(self) -> dict[str, Entry]:
        """What the imported modules have registered so far (for the index test)."""
        return dict(self._entries)


TASKS = Registry("task")
BACKBONES = Registry("backbone", facts=("modality", "tasks"))
DATA_SOURCES = Registry("data source")
HEADS = Registry("head")
MODALITIES = Registry("modality", "modalities")

#: ``mmssl list KIND``: the registries by the name the command takes.
ALL: dict[str, Registry] = {
    "tasks": TASKS,
    "backbones": BACKBONES,
    "data": DATA_SOURCES,
    "heads": HEADS,
    "modalities": MODALITIES,
}


def load_all() -> None:
    """Import every module the indexes name, so that every entry is registered."""
    for registry in ALL.values():
        for declared in registry:
            if declared.module:
                importlib.import_module(declared.module)


# --------------------------------------------------------------------------- the index

_TASK_CONFIGS = "mmssl.tasks.configs"

for _name, _config, _help in (
    ("byol", "BYOLConfig", "BYOL: predict an EMA target network's projection of another view; no negatives."),
    ("clip", "ClipConfig", "CLIP-style alignment of two modalities: towers, projections, symmetric InfoNCE."),
    ("data2vec", "Data2VecConfig", "data2vec: regress an EMA teacher's averaged top layers at masked positions."),
    ("data2vec2", "Data2Vec2Config", "data2vec 2.0: visible-only student, conv decoder, several masks per teacher pass."),
    ("dino", "DINOConfig", "DINO: self-distillation of an EMA teacher across multi-crop views."),
    ("mae", "MAEConfig", "MAE: mask most image patches, encode the visible ones, reconstruct the pixels."),
    ("mlm", "MLMConfig", "MLM: BERT-style masked-token prediction on packed text."),
    ("simclr", "SimCLRConfig", "SimCLR: NT-Xent between two augmented views of each example."),
    ("wav2vec2", "Wav2Vec2TaskConfig", "wav2vec 2.0: contrastive prediction of quantized masked speech frames."),
):
    TASKS.declare(_name, f"mmssl.tasks.{_name}", _help, f"{_TASK_CONFIGS}:{_config}")

_VIEWS = ("simclr", "byol", "dino")
for _name, _module, _modality, _tasks, _help in (
    ("vit", "vit", "vision", (*_VIEWS, "data2vec", "data2vec2", "clip", "mae"),
     "ViT (ViTModel) from a preset: patch tokens, CLS or patch-mean pooling."),
    ("resnet", "resnet", "vision", _VIEWS,
     "ResNet (ResNetModel) from a preset (nano, tiny, resnet18/34/50); global average pooling."),
    ("convnext", "convnext", "vision", _VIEWS,
     "ConvNeXt (ConvNextModel) from a preset (nano, tiny, small, base); layer-normed average pooling."),
    ("convnextv2", "convnext", "vision", _VIEWS,
     "ConvNeXt V2 (ConvNextV2Model, global response norm) from the ConvNeXt presets."),
    ("wav2vec2", "wav2vec2", "audio", ("wav2vec2", *_VIEWS, "data2vec", "data2vec2", "clip"),
     "Wav2Vec2 (Wav2Vec2Model) on raw waveforms from a preset; mean over real frames."),
    ("ast", "ast", "audio", _VIEWS,
     "Audio Spectrogram Transformer (ASTModel) on log-mel patches (ASTFeatureExtractor)."),
    ("logmel_resnet", "resnet", "audio", _VIEWS,
     "ResNet over the one-channel log-mel spectrogram (ASTFeatureExtractor features)."),
    ("bert", "bert", "text", ("mlm", *_VIEWS, "data2vec", "data2vec2", "clip"),
     "BERT (BertModel; BertForMaskedLM for MLM) on the recipe's tokenizer, from a preset."),
    ("roberta", "bert", "text", ("mlm",),
     "RoBERTa (RobertaForMaskedLM) on the recipe's tokenizer, from the BERT presets."),
    ("modernbert", "modernbert", "text", ("mlm", *_VIEWS, "data2vec"),
     "ModernBERT (ModernBertModel: rotary positions, local/global attention) on the recipe's tokenizer."),
):
    BACKBONES.declare(_name, f"mmssl.backbones.{_module}", _help, modality=_modality, tasks=_tasks)

for _name, _help in (
    ("vision", "Images (column 'image'): torchvision v2 crops, patch tokens; ViT, ResNet or ConvNeXt encoders."),
    ("text", "Texts (column 'text'): a trained or named tokenizer, padded or packed ids; BERT or ModernBERT encoders."),
    ("audio", "Waveforms (column 'audio'): decoded and resampled, padded with masks; Wav2Vec2 or spectrogram encoders."),
):
    MODALITIES.declare(_name, f"mmssl.modalities.{_name}", _help)

DATA_SOURCES.declare("hub", "mmssl.data.sources", "A dataset id on the Hugging Face Hub (path), with optional config name.")
for _builder in ("parquet", "imagefolder", "audiofolder", "text", "csv", "json"):
    DATA_SOURCES.declare(_builder, "mmssl.data.sources", f"Local files read with the datasets {_builder!r} builder.")
DATA_SOURCES.declare("sklearn_digits", "mmssl.data.sources", "scikit-learn's bundled 8x8 handwritten digits (1,797 images): offline, for the quickstart.")

HEADS.declare("classification", "mmssl.heads.classification", "LayerNorm, dropout and a linear layer on pooled backbone features.")
HEADS.declare("projection", "mmssl.heads.projection", "A bias-free linear map (CLIP, dual encoders) or a two-layer MLP.")
HEADS.declare("mlp", "mmssl.heads.ssl", "Linear layers with batch norm and ReLU: SimCLR's and BYOL's projectors.")
HEADS.declare("dino", "mmssl.heads.ssl", "DINO's head: MLP to a bottleneck, L2 norm, weight-normalized prototypes.")
