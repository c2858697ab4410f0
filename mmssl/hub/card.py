"""Model cards: a Hub README with metadata, generated from the run directory.

Everything in the card comes from files the run already holds: the resolved recipe, the
last checkpoint's ``trainer_state.json`` (steps, examples, time), ``metrics.jsonl`` (the
final loss), ``environment.json`` (hardware and versions) and ``eval/report.json`` (probe
results, as Hub ``model-index`` metrics). Missing files leave their section out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from mmssl.eval.report import EvalReport, alignment_rows
from mmssl.hub.formats import ExportParts, export_parts
from mmssl.hub.usage import dual_encoder_usage, encoder_usage
from mmssl.recipe import DataConfig, EvalConfig, Recipe, recipe_to_dict
from mmssl.weights import is_pretrained_source
from mmssl.weights.checkpoints import STATE_FILE, latest_checkpoint
from mmssl.weights.exports import RECIPE_FILE

#: how downstream tasks are named in ``model-index``, by modality.
EVAL_TASK_TYPES = {"vision": "image-classification", "text": "text-classification",
                   "audio": "audio-classification"}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _eval_report(path: Path) -> EvalReport | None:
    """The run's eval report; none when it was not evaluated (or the file is torn)."""
    try:
        return EvalReport.from_json(path)
    except (OSError, ValueError):
        return None


def _last_metrics(path: Path) -> dict[str, Any]:
    """The last well-formed line of ``metrics.jsonl`` (a crash may leave a torn last line)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            return record
    return {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


#: Hub metric types of ``mmssl eval``'s scores.
METRIC_TYPES = {"top1": "accuracy", "top5": "top_5_accuracy", "R@1": "recall_at_1", "R@5": "recall_at_5",
                "R@10": "recall_at_10"}


def _dataset_name(source: str | None, path: str | None, data_files: Any) -> str:
    """A data set's public name: its Hub id, else the folders of its files (never a local path)."""
    if source == "hub" and path:
        return path
    files = data_files.values() if isinstance(data_files, dict) else [data_files or []]
    paths = [f for v in files for f in (v if isinstance(v, list) else [v]) if isinstance(f, str)]
    names = [Path(f).parent.name or Path(f).stem for f in paths] or ([Path(path).name] if path else [])
    return ", ".join(dict.fromkeys(n for n in names if n)) or str(source or "local data")


def _test_subset(report: EvalReport, count: int | None) -> int | None:
    """The number of test examples scored when ``eval.max_test_examples`` may have cut the split."""
    limit = report.settings.get("max_test_examples")
    return count if isinstance(limit, int) and isinstance(count, int) and count >= limit else None


#: baselines of ``mmssl eval`` with model-index rows of their own (random init is each row's ``baseline``)
CARD_BASELINES = {"raw_input": "raw input", "supervised_from_scratch": "supervised from scratch"}


def eval_rows(report: EvalReport) -> list[dict[str, Any]]:
    """``model-index`` rows of an eval report: pretrained scores per protocol and label fraction
    (with the random-init score as ``baseline``), then the same for the raw-input and
    supervised-from-scratch baselines, named as such, then a clip run's alignment scores.
    ``examples`` is the number of test examples when only part of the split was scored
    (``eval.max_test_examples``), else ``None``."""
    train = report.data.get("train") or {}
    dataset = _dataset_name(train.get("source"), train.get("path"), train.get("data_files"))
    examples = _test_subset(report, report.sizes.get("test"))
    floor = report.results.get("random_init") or {}
    tables = [(protocol, by_fraction, "") for protocol, by_fraction in report.results.get("pretrained", {}).items()]
    tables += [(protocol, by_fraction, f", {name} baseline") for model, name in CARD_BASELINES.items()
               for protocol, by_fraction in report.results.get(model, {}).items()]
    rows = []
    for protocol, by_fraction, suffix in tables:
        for fraction, scores in by_fraction.items():
            labels = f" ({float(fraction) * 100:g}% labels)" if float(fraction) != 1.0 else ""
            for key, value in scores.items():
                # a score can be missing (top-5 of fewer than five classes) or NaN
                if key not in METRIC_TYPES or (value := _number(value)) is None:
                    continue
                baseline = None if suffix else _number(floor.get(protocol, {}).get(fraction, {}).get(key))
                rows.append({"protocol": f"{protocol}{labels}{suffix}", "metric": METRIC_TYPES[key],
                             "value": value, "baseline": baseline, "dataset": dataset,
                             "split": report.data.get("test_split"), "examples": examples})
    scored = (report.alignment.get("pretrained") or {}).get("num_examples") or {}
    examples = _test_subset(report, next(iter(scored.values()), None))
    for row in alignment_rows(report.alignment):
        rows.append({"protocol": row["protocol"], "metric": METRIC_TYPES[row["metric"]], "value": row["value"],
                     "baseline": row["random_init"], "dataset": dataset, "split": report.settings.get("test_split"),
                     "examples": examples})
    return rows


def _modality(task: Any) -> str:
    modalities = tuple(getattr(task, "modalities", ()) or ())
    return modalities[0] if len(modalities) == 1 else "multimodal"


def _data_name(data: DataConfig) -> str:
    return _dataset_name(data.source, data.path, data.data_files)


def _hub_datasets(recipe: Recipe) -> list[str]:
    """Hub ids of the data sets the model was trained or evaluated on."""
    sources = [recipe.data, recipe.eval.data if recipe.eval else None, getattr(recipe.task, "pair_with", None)]
    return list(dict.fromkeys(d.path for d in sources if d is not None and d.source == "hub" and d.path))


def _hub_model(source: str | None) -> str | None:
    """The Hub id a model started from: the id itself, or the repo an export's recipe names."""
    if not source:
        return None
    path = Path(source)
    if not path.exists():
        return source if is_pretrained_source(source) else None
    try:
        saved = yaml.safe_load((path / RECIPE_FILE).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    repo_id = (saved.get("hub") or {}).get("repo_id") if isinstance(saved, dict) else None
    return repo_id if isinstance(repo_id, str) else None


def _init_sources(recipe: Recipe) -> list[str]:
    towers = getattr(recipe.task, "towers", None) or {}
    return [s for s in [recipe.model.init_from, *(t.init_from for t in towers.values())] if s]


def _base_models(recipe: Recipe) -> list[str]:
    return list(dict.fromkeys(filter(None, map(_hub_model, _init_sources(recipe)))))


def _eval_result(row: dict[str, Any], modality: str, default_name: str, default_split: str | None) -> EvalResult:
    """One ``model-index`` entry; a test subset is named with its size, in the name and the args."""
    name, split, examples = str(row["dataset"] or default_name), row["split"] or default_split, row.get("examples")
    if examples:
        name = f"{name} ({examples} examples of {split or 'the test split'})"
    return EvalResult(
        task_type=EVAL_TASK_TYPES.get(modality, "feature-extraction"),
        dataset_type=str(row["dataset"] or default_name),
        dataset_name=name,
        dataset_split=split,
        dataset_args={"max_examples": examples} if examples else None,
        metric_type=row["metric"],
        metric_name=f"{row['protocol']} {row['metric']}",
        metric_value=round(row["value"], 4),
    )


def card_data(recipe: Recipe, task: Any, rows: list[dict[str, Any]], tag: str | None) -> ModelCardData:
    """Hub metadata: library, tags, datasets, base model, license, pipeline tag and ``model-index``."""
    modality = _modality(task)
    eval_dataset = recipe.eval.data if recipe.eval and recipe.eval.data else recipe.data
    split = recipe.eval.test_split if recipe.eval else None
    results = [_eval_result(row, modality, _data_name(eval_dataset), split) for row in rows]
    base_models = _base_models(recipe)
    return ModelCardData(
        library_name="transformers",
        license=recipe.hub.license,
        tags=["mmssl", "self-supervised-learning", recipe.task.name, *getattr(task, "modalities", ())],
        datasets=_hub_datasets(recipe) or None,
        base_model=base_models or None,
        pipeline_tag=tag,
        model_name=(recipe.hub.repo_id or recipe.name) if results else None,
        eval_results=results or None,
    )


def _training_lines(run_dir: Path | None) -> list[str]:
    if run_dir is None:
        return []
    checkpoint = latest_checkpoint(run_dir)
    state = _read_json(checkpoint / STATE_FILE) if checkpoint else None
    env = _read_json(run_dir / "environment.json") or {}
    last = _last_metrics(run_dir / "metrics.jsonl")
    lines = []
    if isinstance(state, dict):
        if "step" in state:
            lines.append(f"- steps: {state['step']}")
        if "seen_examples" in state:
            lines.append(f"- examples seen: {state['seen_examples']}")
        if (seconds := _number(state.get("elapsed_s"))) is not None:
            took = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
            lines.append(f"- training time: {took}")
    if _number(last.get("loss")) is not None:
        lines.append(f"- final loss: {last['loss']:.4f} (step {last.get('step', '?')})")
    if isinstance(env, dict) and env:
        device = env.get("device_name") or env.get("device", "?")
        lines.append(
            f"- hardware: {env.get('num_processes', 1)} x {device} ({env.get('device', '?')}), "
            f"precision {env.get('mixed_precision', '?')}"
        )
        versions = [f"{k} {env[k]}" for k in ("mmssl", "torch", "transformers") if k in env]
        if versions:
            lines.append(f"- software: {', '.join(versions)}")
    return lines


def _public(value: Any) -> Any:
    """The recipe as the card shows it: absolute local paths cut to their last two parts."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_public(v) for v in value]
    if isinstance(value, str) and Path(value).is_absolute():
        return str(Path("...", *Path(value).parts[-2:]))
    return value


def _source_name(source: str) -> str:
    return _hub_model(source) or Path(source).name


def _model_line(recipe: Recipe, task: Any) -> str:
    """The backbone preset(s) that were trained, and what they started from."""
    towers = getattr(task, "towers", None)
    if towers is not None:
        cfgs = getattr(recipe.task, "towers", {}) or {}
        described = []
        for modality in task.modalities:
            cfg = cfgs.get(modality)
            origin = f"from `{_source_name(cfg.init_from)}`" if cfg and cfg.init_from else (
                f"preset `{cfg.preset if cfg else 'nano'}`")
            described.append(f"{modality} tower `{type(towers[modality].model).__name__}` {origin}")
        return "; ".join(described)
    line = f"model preset `{recipe.model.preset}`"
    if recipe.model.init_from:
        line += f", started from `{_source_name(recipe.model.init_from)}`"
    return line


def _subject(task: Any) -> str:
    modalities = tuple(getattr(task, "modalities", ()))
    subject = f"{modalities[0]} encoder" if len(modalities) == 1 else f"{'-'.join(modalities)} dual encoder"
    return f"{'An' if subject[0] in 'aeiou' else 'A'} {subject}"


def _eval_section(rows: list[dict[str, Any]]) -> str:
    table = ["| protocol | metric | value | random init |", "| --- | --- | --- | --- |"]
    table += [
        f"| {r['protocol']} | {r['metric']} | {r['value']:.4f} | "
        + (f"{r['baseline']:.4f} |" if r.get("baseline") is not None else "- |")
        for r in rows
    ]
    subsets = sorted({(r["examples"], r["split"]) for r in rows if r.get("examples")}, key=str)
    scope = "".join(f" Scored on {n} examples of the `{split}` split, not all of it." for n, split in subsets)
    return (
        "## Evaluation\n\nProbes of the pretrained encoder (and, for CLIP, cross-modal retrieval "
        "and zero-shot accuracy) by `mmssl eval`; the same on a randomly initialized model of "
        f"the same shape give the floor.{scope}\n\n" + "\n".join(table)
    )


def _pooling(recipe: Recipe, task: Any) -> str:
    """How ``embed`` pools: a clip tower's own pooling, else ``eval.pooling``."""
    towers = getattr(task, "towers", None)
    if towers is not None:
        return towers[task.modalities[0]].pooling
    return (recipe.eval or EvalConfig()).pooling


def model_card(recipe: Recipe, task: Any, run_dir: str | Path | None = None) -> ModelCard:
    """The card for ``task`` trained by ``recipe``; ``run_dir`` adds training and eval facts."""
    run_dir = Path(run_dir) if run_dir is not None else None
    report = _eval_report(run_dir / "eval" / "report.json") if run_dir else None
    rows = eval_rows(report) if report is not None else []
    repo = recipe.hub.repo_id or "PATH/TO/EXPORT"
    parts: ExportParts | None = None
    if getattr(task, "exports_dual_encoder_folder", False):
        usage = dual_encoder_usage(task, repo)
        classes = "mmssl dual encoder of " + " + ".join(f"`{type(task.towers[m].model).__name__}`"
                                                        for m in task.modalities)
    else:
        parts = export_parts(task)
        usage = encoder_usage(parts, recipe, _pooling(recipe, task), repo)
        classes = f"root `{type(parts.root).__name__}`, encoder `{type(parts.encoder).__name__}`"
    data = card_data(recipe, task, rows, parts.pipeline_tag if parts else None)
    sections = [
        f"# {recipe.hub.repo_id or recipe.name}",
        f"{_subject(task)} pretrained with self-supervised **{recipe.task.name}** by mmssl on "
        f"{_data_name(recipe.data)} ({_model_line(recipe, task)}; {classes}).",
        "## How to use\n\n" + usage,
    ]
    training = _training_lines(run_dir)
    if training:
        sections.append("## Training\n\n" + "\n".join(training))
    if rows:
        sections.append(_eval_section(rows))
    recipe_yaml = yaml.safe_dump(_public(recipe_to_dict(recipe)), sort_keys=False)
    sections.append(
        "## Recipe\n\nReproduce with `mmssl pretrain mmssl_recipe.yaml` (the same file is in this "
        f"repository; local paths are shortened here).\n\n```yaml\n{recipe_yaml}```"
    )
    content = f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"
    return ModelCard(content)
