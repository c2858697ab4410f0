"""The Python API: what the ``mmssl`` commands do, as functions that return dataclasses.

``import mmssl`` stays cheap: these names are loaded on first access (``mmssl.__getattr__``)
and each function imports torch, transformers or datasets only when its work needs them
(function-local imports, purely for start-up time). The commands in ``mmssl.commands`` are
thin wrappers that call these functions and print their results.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmssl.errors import HubError
from mmssl.recipe import Overrides, Recipe, recipe_from_dict, recipe_to_dict
from mmssl.recipe import load_recipe as _load_recipe_file
from mmssl.train.dry_run import DryRun as DryRunResult
from mmssl.train.run_lock import run_lock

__all__ = [
    "DryRunResult",
    "EvalResult",
    "ExportResult",
    "PretrainResult",
    "PushResult",
    "dry_run",
    "evaluate",
    "export",
    "load_recipe",
    "pretrain",
    "push",
]


@dataclass
class EvalResult:
    """An evaluation report (``report.json``'s content) and the files written for it."""

    report: dict[str, Any]
    paths: dict[str, Path]

    def table(self) -> str:
        """The report as the markdown table ``mmssl eval`` prints."""
        from mmssl.eval.report import markdown_table

        return markdown_table(self.report)


@dataclass
class PretrainResult:
    """Where a finished run is and how it ended; ``eval`` is set when the recipe evaluates."""

    run_dir: Path
    step: int
    checkpoint: Path | None
    metrics: dict[str, Any]
    bad_examples: int
    nan_skips: int
    eval: EvalResult | None = None
    hub_url: str | None = None

    @property
    def loss(self) -> float | None:
        return self.metrics.get("loss")


@dataclass
class ExportResult:
    """A transformers-format folder (root model, ``encoder/``, processor, model card)."""

    out_dir: Path


@dataclass
class PushResult:
    """The Hub repository and the URL of the commit that holds the model."""

    repo_id: str
    url: str


def load_recipe(recipe_or_path: str | Path | dict | Recipe, overrides: Overrides = ()) -> Recipe:
    """A validated recipe from a YAML path, a mapping or a :class:`Recipe`, plus overrides
    (``["train.lr=3e-4"]`` or ``{"train.lr": 3e-4}``)."""
    if isinstance(recipe_or_path, Recipe):
        return recipe_from_dict(recipe_to_dict(recipe_or_path), overrides, "recipe")
    if isinstance(recipe_or_path, dict):
        return recipe_from_dict(recipe_or_path, overrides, "recipe")
    return _load_recipe_file(recipe_or_path, overrides)


def dry_run(recipe_or_path: str | Path | dict | Recipe, overrides: Overrides = ()) -> DryRunResult:
    """Check data, tokenizer and model build of a recipe; count examples, parameters, steps."""
    from mmssl.train.dry_run import dry_run as check

    return check(load_recipe(recipe_or_path, overrides))


def _check_hub(recipe: Recipe) -> None:
    """Fail before training, not after it, when ``hub.push`` cannot work."""
    from mmssl.hub.push import require_token

    if not recipe.hub.repo_id:
        raise HubError("hub.repo_id: required with hub.push: true (e.g. your-user/mae-cifar10)")
    require_token()


def _push_run(recipe: Recipe, run_dir: Path) -> str | None:
    """``hub.push``: export the finished run and push it, from the main process only."""
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return None
    hub = recipe.hub
    return push(run_dir, hub.repo_id, private=hub.private, revision=hub.revision,
                commit_message=hub.commit_message).url


def pretrain(
    recipe_or_path: str | Path | dict | Recipe,
    overrides: Overrides = (),
    *,
    resume: str | None = None,
    overwrite: bool = False,
) -> PretrainResult:
    """Train a recipe, with the online monitor if ``eval.monitor_every`` asks; then evaluate
    (``eval:``) and push (``hub.push``) as it asks, holding the run directory's lock throughout.

    ``resume``: ``"latest"`` for the run's newest checkpoint that verifies (an error if there
    is none), ``"auto"`` for the same or a fresh start, or a checkpoint folder;
    ``overwrite`` starts again in a folder that holds an earlier run (docs/reliability.md).
    """
    recipe = load_recipe(recipe_or_path, overrides)  # before the heavy imports: errors come fast
    from mmssl.eval.monitor import build_monitor
    from mmssl.train.loop import pretrain as train

    if recipe.hub.push:
        _check_hub(recipe)
    monitor = build_monitor(recipe)  # eval.monitor_every: the online monitor, called by the loop
    with run_lock(recipe.run_dir, "pretrain"):
        run = train(recipe, resume=resume, overwrite=overwrite, callbacks=[monitor] if monitor else [])
        result = PretrainResult(run.run_dir, run.step, run.checkpoint, run.last_metrics,
                                run.bad_examples, run.nan_skips)
        if recipe.eval is not None:
            result.eval = evaluate(run.run_dir)
        if recipe.hub.push:
            result.hub_url = _push_run(recipe, run.run_dir)
    return result


def evaluate(
    run_dir: str | Path,
    overrides: Overrides = (),
    *,
    data: str | Path | Mapping[str, Any] | Sequence[str] | None = None,
    protocols: Sequence[str] | None = None,
    checkpoint: str | Path | None = None,
) -> EvalResult:
    """Probe a run's backbone against its baselines (random init, raw input, supervised from
    scratch); writes ``RUN_DIR/eval/report.{json,md}``.

    ``overrides`` are fields of the ``eval:`` section (``["knn_k=10"]``); ``data`` is what to
    evaluate on instead of the recipe's data: a data mapping, a folder, a file, a Hub id or
    ``key=value`` overrides of it (``mmssl.data.spec``).
    """
    from mmssl.data.spec import data_mapping
    from mmssl.eval.runner import evaluate_run, resolve_eval_config

    recipe_file = Path(run_dir) / "recipe.yaml"
    if not recipe_file.is_file():
        raise FileNotFoundError(f"{run_dir}: no recipe.yaml (is it an mmssl run directory?)")
    recipe = _load_recipe_file(recipe_file)
    if isinstance(overrides, Mapping):  # JSON is YAML, which the override parser reads
        overrides = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    overrides = list(overrides)
    if protocols:
        overrides.append(f"protocols=[{','.join(protocols)}]")
    cfg = resolve_eval_config(recipe, overrides, "command line")
    if data:
        base = dataclasses.asdict(cfg.data or recipe.data)
        tree = recipe_to_dict(dataclasses.replace(recipe, eval=cfg))
        cfg = recipe_from_dict(tree, {"eval.data": data_mapping(data, base)}, "--data").eval
    report, paths = evaluate_run(run_dir, cfg, checkpoint)
    return EvalResult(report, paths)


def export(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write a run as a folder that transformers loads (``AutoModel.from_pretrained``)."""
    from mmssl.hub.export import export as write

    return ExportResult(write(run_dir, out_dir, checkpoint=checkpoint, overwrite=overwrite))


def push(
    source: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
) -> PushResult:
    """Push a run (exported on the fly) or an export folder to the Hub in one commit."""
    from mmssl.hub.push import push as upload

    url = upload(source, repo_id, private=private, revision=revision, commit_message=commit_message)
    return PushResult(repo_id, url)
