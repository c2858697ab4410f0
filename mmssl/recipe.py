"""Recipes: YAML files mapped onto typed dataclasses, validated before any work starts.

Every error names the file, the key path and what was expected, and suggests the closest
known key for a misspelling. ``a.b=c`` overrides from the command line go through the same
checks. The task section is typed by the task's own config class from the registry.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml

from mmssl.registry import BACKBONES, TASKS, RegistryError


class RecipeError(ValueError):
    """A recipe (file or override) is invalid; the message says where and what to fix."""


# --------------------------------------------------------------------------- numeric ranges


@dataclass(frozen=True)
class Range:
    """The values a numeric field accepts, checked when a recipe loads (floats must be finite).

    Every ``int``/``float`` field of a recipe dataclass is ``Annotated`` with one, so that a
    value no later code can use (``log_every: 0``, ``lr: .nan``) fails at load with the file
    and key, never as a ZeroDivisionError mid-run.
    """

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        if self.high == math.inf:
            if self.low == -math.inf:
                return "a finite number"
            return f"{'above' if self.low_open else 'at least'} {self.low:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


PositiveInt = Annotated[int, Range(1)]
NonNegativeInt = Annotated[int, Range(0)]
Seed = Annotated[int, Range(0, 2**32 - 1)]
PositiveFloat = Annotated[float, Range(0, low_open=True)]
NonNegativeFloat = Annotated[float, Range(0)]
FiniteFloat = Annotated[float, Range()]
#: a probability or a fraction of something, ends included
UnitFloat = Annotated[float, Range(0, 1)]
#: a fraction that must keep a part of something: (0, 1]
OpenUnitFloat = Annotated[float, Range(0, 1, low_open=True)]
#: an EMA momentum or a fraction that must leave something: [0, 1)
HalfOpenUnitFloat = Annotated[float, Range(0, 1, high_open=True)]
#: strictly between 0 and 1
InnerUnitFloat = Annotated[float, Range(0, 1, low_open=True, high_open=True)]
#: SimCLR's colour-jitter strength s: hue jitter 0.2 * s may not pass 0.5
JitterStrength = Annotated[float, Range(0, 2.5)]


# --------------------------------------------------------------------------- sections


@dataclass
class ImageConfig:
    """How images are decoded and resized before a vision backbone sees them."""

    size: PositiveInt = 224
    channels: PositiveInt = 3
    mean: list[FiniteFloat] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[PositiveFloat] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    random_resized_crop: bool = True
    crop_scale: list[OpenUnitFloat] = field(default_factory=lambda: [0.2, 1.0])
    horizontal_flip: bool = True
    #: where SimCLR/BYOL/DINO make their image views: ``workers`` (per example, in the
    #: DataLoader workers) or ``device`` (workers only decode and resize to ``size``; each
    #: batch's views are made on the accelerator, ``mmssl.augment.batched``)
    augment_on: Literal["workers", "device"] = "workers"

    def __post_init__(self) -> None:
        if len(self.crop_scale) != 2 or self.crop_scale[0] > self.crop_scale[1]:
            raise ValueError(f"crop_scale must be [low, high] with low <= high, got {self.crop_scale}")


@dataclass
class TextConfig:
    """Tokenizer and sequence settings for text backbones."""

    tokenizer: str | None = None
    max_length: Annotated[int, Range(2)] = 128
    packing: bool = True
    lowercase: bool = False
    num_proc: PositiveInt | None = None
    # used only when ``tokenizer`` is unset and the task trains one (docs/text.md)
    vocab_size: PositiveInt = 8000
    tokenizer_model: Literal["unigram", "bpe"] = "unigram"
    tokenizer_sample: PositiveInt = 1_000_000


@dataclass
class AudioConfig:
    """Decoding and cropping of waveforms for audio backbones."""

    sampling_rate: PositiveInt = 16000
    max_seconds: PositiveFloat = 4.0
    min_seconds: NonNegativeFloat = 0.1
    normalize: bool = True
    num_mel_bins: PositiveInt = 64    # log-mel bands of the spectrogram backbones (ast, logmel_resnet)


@dataclass
class DataConfig:
    """Where examples come from and which columns hold what."""

    source: str = "parquet"
    path: str | None = None
    name: str | None = None
    data_files: dict[str, Any] | None = None
    split: str = "train"
    columns: dict[str, str] = field(default_factory=dict)
    streaming: bool = False
    shuffle_buffer: PositiveInt = 10_000
    max_examples: PositiveInt | None = None
    # folder sources (imagefolder, audiofolder, text) without a test split hold one out
    holdout_fraction: HalfOpenUnitFloat = 0.1
    holdout_seed: Seed = 0
    on_bad_example: Literal["raise", "skip"] = "raise"
    max_bad_fraction: UnitFloat = 0.1
    num_workers: NonNegativeInt = 0
    group_by_length: bool = False
    image: ImageConfig = field(default_factory=ImageConfig)
    text: TextConfig = field(default_factory=TextConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)


@dataclass
class ModelConfig:
    """The backbone: a registered encoder family (``mmssl list backbones``; none: the task's
    usual one), a preset of its transformers config plus free overrides of its fields."""

    preset: str = "tiny"
    config: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    backbone: str | None = None


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping for the generic training loop."""

    batch_size: PositiveInt = 32
    grad_accum: PositiveInt = 1
    max_steps: PositiveInt | None = None
    epochs: PositiveInt | None = None
    lr: PositiveFloat = 1.5e-4
    weight_decay: NonNegativeFloat = 0.05
    betas: list[HalfOpenUnitFloat] = field(default_factory=lambda: [0.9, 0.95])
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: NonNegativeInt = 0
    min_lr_ratio: UnitFloat = 0.0
    max_grad_norm: PositiveFloat | None = 1.0
    precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    compile: bool = False
    cpu: bool = False
    log_every: PositiveInt = 10
    save_every: NonNegativeInt = 500
    keep_last: NonNegativeInt = 2
    resume: str = "never"
    on_nan: Literal["stop", "skip"] = "stop"
    max_nan_skips: NonNegativeInt = 10
    progress: bool = True
    # accelerate's tracker names (mmssl/train/logging.py), one or a list; "all" or "none"
    report_to: str | list[str] = field(default_factory=lambda: ["tensorboard"])

    def __post_init__(self) -> None:
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers [beta1, beta2], got {self.betas}")


@dataclass
class EvalConfig:
    """Downstream evaluation run after pretraining (see docs/evaluation.md)."""

    protocols: list[Literal["linear", "knn", "finetune", "alignment"]] = field(
        default_factory=lambda: ["linear", "knn"]
    )
    data: DataConfig | None = None
    test_split: str = "test"
    label_column: str = "label"
    pooling: Literal["cls", "mean"] = "mean"
    label_fractions: list[OpenUnitFloat] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    val_fraction: InnerUnitFloat = 0.1
    knn_k: PositiveInt = 20
    knn_temperature: PositiveFloat = 0.07
    linear_lrs: list[PositiveFloat] = field(default_factory=lambda: [1e-3, 1e-2, 1e-1])
    linear_weight_decays: list[NonNegativeFloat] = field(default_factory=lambda: [0.0, 1e-4])
    linear_epochs: PositiveInt = 100
    batch_size: PositiveInt = 256
    finetune_epochs: PositiveInt = 3
    # more epochs where needed so that fine-tuning takes at least this many steps (few labels)
    finetune_min_steps: NonNegativeInt = 0
    finetune_batch_size: PositiveInt = 32
    finetune_lr: PositiveFloat = 1e-3
    finetune_backbone_lr_scale: NonNegativeFloat = 0.1
    max_train_examples: PositiveInt | None = None
    max_test_examples: PositiveInt | None = None
    # the online monitor during pretraining (mmssl/eval/monitor.py); 0 turns it off
    monitor_every: NonNegativeInt = 0
    monitor_examples: Annotated[int, Range(10)] = 1000

    def __post_init__(self) -> None:
        if not self.protocols:
            raise ValueError("protocols is empty: name at least one of linear, knn, finetune, alignment, "
                             "or leave out the eval section to skip evaluation")
        bad = [f for f in self.label_fractions if not 0.0 < f <= 1.0]
        if bad:
            raise ValueError(f"label_fractions must be in (0, 1], got {bad}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")


@dataclass
class HubConfig:
    """Publishing to the Hugging Face Hub after training."""

    push: bool = False
    repo_id: str | None = None
    private: bool = False
    revision: str | None = None
    commit_message: str | None = None
    license: str = "apache-2.0"


@dataclass
class TaskConfig:
    """Base of every task's config; the ``name`` picks the task from the registry."""

    name: str = ""


@dataclass
class Recipe:
    """A whole experiment: what to learn, from what data, how, and what to do after."""

    task: TaskConfig
    data: DataConfig
    name: str = "run"
    seed: Seed = 0
    output_dir: str = "runs/${name}"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig | None = None
    hub: HubConfig = field(default_factory=HubConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir.replace("${name}", self.name))


# --------------------------------------------------------------------------- typed loading


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    return getattr(tp, "__name__", str(tp))


class _Loader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> RecipeError:
        where = f"{self.source}: " if self.source else ""
        return RecipeError(f"{where}{path or '<root>'}: {message}")

    def convert(self, value: Any, tp: Any, path: str) -> Any:
        if tp is Any:
            return value
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is Annotated:
            return self.ranged(self.convert(value, args[0], path), args[1:], path)
        if origin in (Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            errors = []
            for arg in args:
                if arg is type(None):
                    continue
                try:
                    return self.convert(value, arg, path)
                except RecipeError as err:
                    errors.append(err)
            if len(errors) == 1:
                raise errors[0]
            raise self.fail(path, f"expected {_type_name(tp)}, got {value!r}")
        if origin is Literal:
            if value not in args:
                close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.fail(path, f"expected {_type_name(tp)}, got {value!r}{hint}")
            return value
        if dataclasses.is_dataclass(tp):
            return self.dataclass(tp, value, path)
        if origin is list:
            if not isinstance(value, list):
                raise self.fail(path, f"expected a list, got {value!r}")
            return [self.convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
        if origin is dict:
            if not isinstance(value, dict):
                raise self.fail(path, f"expected a mapping, got {value!r}")
            return {
                self.convert(k, args[0], path): self.convert(v, args[1], f"{path}.{k}")
                for k, v in value.items()
            }
        if tp is bool:
            if not isinstance(value, bool):
                raise self.fail(path, f"expected true or false, got {value!r}")
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(path, f"expected an integer, got {value!r}")
            return value
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.fail(path, f"expected a number, got {value!r}")
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise self.fail(path, f"expected a string, got {value!r}")
            return value
        raise self.fail(path, f"unsupported field type {tp!r}")

    def ranged(self, value: Any, metadata: tuple, path: str) -> Any:
        for bound in metadata:
            if isinstance(bound, Range) and not bound.contains(value):
                raise self.fail(path, f"must be {bound.describe()}, got {value!r}")
        return value

    def dataclass(self, cls: type, value: Any, path: str) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.fail(path, f"expected {_type_name(cls)}, got {value!r}")
        if cls is TaskConfig or (isinstance(cls, type) and issubclass(cls, TaskConfig)):
            cls = self.task_class(value, path)
        hints = typing.get_type_hints(cls, include_extras=True)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        kwargs: dict[str, Any] = {}
        for key, item in value.items():
            key_path = f"{path}.{key}" if path else str(key)
            if key not in fields:
                close = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                known = ", ".join(fields)
                raise self.fail(key_path, f"unknown key{hint} (known keys: {known})")
            kwargs[key] = self.convert(item, hints[key], key_path)
        for name, f in fields.items():
            no_default = f.default is dataclasses.MISSING
            if no_default and f.default_factory is dataclasses.MISSING and name not in kwargs:
                key_path = f"{path}.{name}" if path else name
                raise self.fail(key_path, f"required field is missing ({_type_name(hints[name])})")
        try:
            obj = cls(**kwargs)
        except (TypeError, ValueError) as err:
            raise self.fail(path, str(err)) from err
        return obj

    def task_class(self, value: dict, path: str) -> type:
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail(f"{path}.name", "required: the task to run, e.g. 'mae' (see `mmssl list`)")
        try:
            return TASKS.config_class(name) or TaskConfig
        except RegistryError as err:
            raise self.fail(f"{path}.name", str(err)) from err


def _set_path(tree: dict, dotted: str, value: Any, source: str) -> None:
    keys = dotted.split(".")
    node = tree
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            done = ".".join(keys[: i + 1])
            raise RecipeError(f"{source}: {dotted}: {done} is {child!r}, not a mapping")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``train.lr=3e-4`` into its key path and a YAML-parsed value."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"override {text!r}: expected KEY.PATH=VALUE, e.g. train.lr=3e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise RecipeError(f"override {text!r}: the value is not valid YAML ({err})") from err
    return key, _fix_numbers(value)


_SCIENTIFIC = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _fix_numbers(tree: Any) -> Any:
    """YAML 1.1 reads ``3e-4`` as a string; recipes mean a number."""
    if isinstance(tree, dict):
        return {k: _fix_numbers(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_fix_numbers(v) for v in tree]
    if isinstance(tree, str) and _SCIENTIFIC.match(tree):
        return float(tree)
    return tree


#: ``["train.lr=3e-4"]`` (values parsed as YAML) or ``{"train.lr": 3e-4}`` (values as given).
Overrides = Sequence[str] | Mapping[str, Any]


def recipe_from_dict(data: Any, overrides: Overrides = (), source: str = "") -> Recipe:
    """Build a validated :class:`Recipe` from a mapping plus ``a.b=c`` overrides."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a mapping of sections, got {type(data).__name__}")
    tree = _fix_numbers(data)
    if isinstance(overrides, Mapping):
        pairs = [(key, value, f"override {key!r}") for key, value in overrides.items()]
    else:
        pairs = [(*parse_override(text), f"override {text!r}") for text in overrides]
    for key, value, where in pairs:
        _set_path(tree, key, value, where)
    loader = _Loader(source)
    recipe = loader.dataclass(Recipe, tree, "")
    _check_backbones(recipe, loader)
    return recipe


def _chosen_backbones(recipe: Recipe) -> list[tuple[str, str, str | None]]:
    """(key, backbone, modality) of every backbone the recipe names; CLIP names one per tower."""
    chosen = []
    if recipe.model.backbone:
        chosen.append(("model.backbone", recipe.model.backbone, getattr(recipe.task, "modality", None)))
    for modality, tower in (getattr(recipe.task, "towers", None) or {}).items():
        if getattr(tower, "backbone", None):
            chosen.append((f"task.towers.{modality}.backbone", tower.backbone, modality))
    return chosen


def _check_backbones(recipe: Recipe, loader: _Loader) -> None:
    """A backbone its task cannot use is a one-line error when the recipe loads (read from
    the registry's index: no torch import). Tasks without ``task.modality`` (MAE, MLM,
    wav2vec 2.0) are served by backbones of their one modality only."""
    task = recipe.task.name
    for key, name, modality in _chosen_backbones(recipe):
        try:
            facts = BACKBONES.describe(name).facts
        except RegistryError as err:
            raise loader.fail(key, str(err)) from err
        if task not in facts["tasks"]:
            accepted = ", ".join(d.name for d in BACKBONES if task in d.facts["tasks"]) or "none"
            raise loader.fail(key, f"task {task!r} cannot use backbone {name!r} ({name} serves "
                                   f"{', '.join(facts['tasks'])}; {task} accepts {accepted})")
        if modality and facts["modality"] != modality:
            raise loader.fail(key, f"{name!r} is a {facts['modality']} backbone; the task reads {modality}")


#: the recipes that ship with the package (``mmssl recipes``); in the repository a link to recipes/.
SHIPPED_RECIPES = Path(__file__).parent / "recipes"


def shipped_recipes() -> dict[str, Path]:
    """The shipped recipes by name (the file name without ``.yaml``)."""
    return {p.stem: p for p in sorted(SHIPPED_RECIPES.glob("*.yaml"))}


def _recipe_hint(path: Path) -> str:
    """A shipped recipe whose name is close to a missing file's, so a typo is one glance away."""
    close = difflib.get_close_matches(path.stem, list(shipped_recipes()), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"; {hint}(`mmssl recipes` lists the shipped recipes)"


def load_recipe(path: str | Path, overrides: Overrides = ()) -> Recipe:
    """Read, merge overrides into, and validate a recipe file (or a shipped recipe's name)."""
    path = Path(path)
    if not path.exists() and str(path) in shipped_recipes():
        path = shipped_recipes()[str(path)]
    try:
        text = path.read_text()
    except FileNotFoundError as err:
        raise RecipeError(f"{path}: no such file or shipped recipe{_recipe_hint(path)}") from err
    except OSError as err:
        raise RecipeError(f"{path}: cannot read the recipe ({err.strerror})") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {err}") from err
    return recipe_from_dict(data, overrides, str(path))


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe as plain data, ready for YAML."""
    return dataclasses.asdict(recipe)


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
