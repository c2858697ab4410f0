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

from mmssl.eval.report import alignment_rows
from mmssl.recipe import DataConfig, Recipe, recipe_to_dict
from mmssl.train.checkpoint import STATE_FILE, latest_checkpoint

#: the Hub pipeline tag of the exported root model, by modality.
PIPELINE_TAGS = {"vision": "image-feature-extraction", "text": "fill-mask", "audio": "feature-extraction"}
#: how downstream tasks are named in ``model-index``, by modality.
EVAL_TASK_TYPES = {"vision": "image-classification", "text": "text-classification",
                   "audio": "audio-classification"}
_LOADERS = {
    "vision": ("AutoImageProcessor", "images=image"),
    "text": ("AutoTokenizer", '"some text"'),
    "audio": ("AutoFeatureExtractor", "waveform, sampling_rate=sr"),
}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
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


def _report_dataset(data: dict[str, Any], split: Any) -> str | None:
    """A readable name for the evaluation data: the Hub id, or the folder of the split's file."""
    if data.get("source") == "hub" and data.get("path"):
        return str(data["path"])
    files = data.get("data_files") if isinstance(data.get("data_files"), dict) else {}
    file = files.get(split) or files.get("train")
    if isinstance(file, str):
        return Path(file).parent.name or file
    return data.get("path") or data.get("source")


#: baselines of ``mmssl eval`` with model-index rows of their own (random init is each row's ``baseline``)
CARD_BASELINES = {"raw_input": "raw input", "supervised_from_scratch": "supervised from scratch"}


def _mmssl_eval_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of ``mmssl eval``'s report: pretrained scores per protocol and label fraction, then
    the same for the raw-input and supervised-from-scratch baselines, named as such."""
    data = report.get("data") if isinstance(report.get("data"), dict) else {}
    train = data.get("train") if isinstance(data.get("train"), dict) else {}
    dataset = _report_dataset(train, data.get("test_split"))
    floor = report["results"].get("random_init") or {}
    rows = []
    tables = [(protocol, by_fraction, "") for protocol, by_fraction in report["results"]["pretrained"].items()]
    tables += [(protocol, by_fraction, f", {name} baseline") for model, name in CARD_BASELINES.items()
               if isinstance(report["results"].get(model), dict)
               for protocol, by_fraction in report["results"][model].items()]
    for protocol, by_fraction, suffix in tables:
        if not isinstance(by_fraction, dict):
            continue
        for fraction, scores in by_fraction.items():
            if not isinstance(scores, dict):
                continue
            try:
                labels = f" ({float(fraction) * 100:g}% labels)" if float(fraction) != 1.0 else ""
            except ValueError:
                labels = f" ({fraction})"
            for key, value in scores.items():
                if key not in METRIC_TYPES or (value := _number(value)) is None:
                    continue
                baseline = None if suffix else _number(((floor.get(protocol) or {}).get(fraction) or {}).get(key))
                rows.append({"protocol": f"{protocol}{labels}{suffix}", "metric": METRIC_TYPES.get(key, key),
                             "value": value, "baseline": baseline, "dataset": dataset,
                             "split": data.get("test_split")})
    split = (report.get("settings") or {}).get("test_split")
    for row in alignment_rows(report):
        rows.append({"protocol": row["protocol"], "metric": METRIC_TYPES[row["metric"]], "value": row["value"],
                     "baseline": row["random_init"], "dataset": dataset, "split": split})
    return rows


def eval_rows(report: Any) -> list[dict[str, Any]]:
    """``(protocol, metric, value, dataset, split)`` rows from an eval report, read defensively.

    Reads ``mmssl eval``'s ``report.json`` (``results.pretrained.<protocol>.<fraction>``,
    with the random-init floor as ``baseline``); otherwise a list of result records
    (``protocol``/``name``, ``metric``, ``value``, optional ``dataset``, ``split``), the same
    under a ``results`` key, or nested mappings whose numeric leaves are metrics.
    """
    results = report.get("results") if isinstance(report, dict) else None
    if isinstance(results, dict) and isinstance(results.get("pretrained"), dict):
        return _mmssl_eval_rows(report)
    if isinstance(results, list):
        report = report["results"]
    rows: list[dict[str, Any]] = []
    if isinstance(report, list):
        for item in report:
            if not isinstance(item, dict):
                continue
            value = _number(item.get("value"))
            metric = item.get("metric")
            if value is None or not isinstance(metric, str):
                continue
            protocol = item.get("protocol") or item.get("name") or "eval"
            rows.append({"protocol": str(protocol), "metric": metric, "value": value,
                         "dataset": item.get("dataset"), "split": item.get("split")})
        return rows

    def walk(node: Any, path: list[str]) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                walk(child, path + [str(key)])
        elif (value := _number(node)) is not None and len(path) >= 2:
            rows.append({"protocol": ".".join(path[:-1]), "metric": path[-1], "value": value,
                         "dataset": None, "split": None})

    walk(report, [])
    return rows


def _modality(task: Any) -> str:
    modalities = tuple(getattr(task, "modalities", ()) or ())
    return modalities[0] if len(modalities) == 1 else "multimodal"


def _data_name(data: DataConfig) -> str:
    if data.source == "hub" and data.path:
        return data.path
    if data.data_files:
        return ", ".join(f"{split}: {files}" for split, files in data.data_files.items())
    return data.path or data.source


def card_data(recipe: Recipe, task: Any, rows: list[dict[str, Any]]) -> ModelCardData:
    """Hub metadata: library, tags, datasets, license, pipeline tag and ``model-index``."""
    modality = _modality(task)
    hub_dataset = recipe.data.path if recipe.data.source == "hub" else None
    eval_dataset = recipe.eval.data if recipe.eval and recipe.eval.data else recipe.data
    results = [
        EvalResult(
            task_type=EVAL_TASK_TYPES.get(modality, "feature-extraction"),
            dataset_type=str(row["dataset"] or _data_name(eval_dataset)),
            dataset_name=str(row["dataset"] or _data_name(eval_dataset)),
            dataset_split=row["split"] or (recipe.eval.test_split if recipe.eval else None),
            metric_type=row["metric"],
            metric_name=f"{row['protocol']} {row['metric']}",
            metric_value=round(row["value"], 4),
        )
        for row in rows
    ]
    return ModelCardData(
        library_name="transformers",
        license=recipe.hub.license,
        tags=["mmssl", "self-supervised-learning", recipe.task.name, modality],
        datasets=[hub_dataset] if hub_dataset else None,
        pipeline_tag=PIPELINE_TAGS.get(modality),
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


def _usage(recipe: Recipe, task: Any, model_class: str, repo: str) -> str:
    modality = _modality(task)
    processor, call = _LOADERS.get(modality, ("AutoProcessor", "inputs"))
    return (
        "```python\n"
        f"from transformers import AutoModel, {processor}\n\n"
        f'repo = "{repo}"\n'
        f'processor = {processor}.from_pretrained(repo, subfolder="encoder")\n'
        f'encoder = AutoModel.from_pretrained(repo, subfolder="encoder")\n'
        f"features = encoder(**processor({call}, return_tensors=\"pt\")).last_hidden_state\n"
        "```\n\n"
        f"The root folder holds the whole pretraining model (`{model_class}`, with its "
        "pretraining head) to continue pretraining, with transformers or with mmssl "
        f"(`model.init_from: {repo}` in a recipe)."
    )


def dual_encoder_usage(recipe: Recipe, task: Any) -> str:
    """How to use a dual-encoder export: each tower with transformers, the whole with mmssl."""
    repo = recipe.hub.repo_id or "PATH/TO/EXPORT"
    loads = []
    for modality in task.modalities:
        processor, call = _LOADERS[modality]
        loads.append(
            f'{modality}_processor = {processor}.from_pretrained(repo, subfolder="{modality}")\n'
            f'{modality}_model = AutoModel.from_pretrained(repo, subfolder="{modality}")\n'
            f"{modality}_states = {modality}_model(**{modality}_processor({call}, "
            'return_tensors="pt")).last_hidden_state'
        )
    processors = ", ".join(sorted({_LOADERS[m][0] for m in task.modalities}))
    pooling = ", ".join(f"{m}: `{task.towers[m].pooling}`" for m in task.modalities)
    return (
        "Each tower is a plain transformers model in its own folder:\n\n"
        "```python\n"
        f"from transformers import AutoModel, {processors}\n\n"
        f'repo = "{repo}"\n' + "\n".join(loads) + "\n```\n\n"
        f"The shared embedding is the pooled state ({pooling}) through the projection in "
        "`projections.safetensors`, L2-normalised; `mmssl_dual_encoder.json` describes it. "
        "mmssl rebuilds the whole model (towers, pooling, projections, logit scale):\n\n"
        "```python\n"
        "from huggingface_hub import snapshot_download\n"
        "from mmssl.hub.load import load_dual_encoder\n"
        "from mmssl.eval.alignment import embed_values\n\n"
        f'model = load_dual_encoder(snapshot_download("{repo}"))  # or a local folder\n'
        f'embeddings = embed_values(model, "{task.modalities[0]}", [...])  # raw cells, as in the data set\n'
        "```\n\n"
        "`mmssl retrieval FOLDER` scores retrieval on the recipe's test data; "
        "`task.towers.<modality>.init_from: FOLDER` in a clip recipe starts a tower from it."
    )


def model_card(
    recipe: Recipe,
    task: Any,
    run_dir: str | Path | None = None,
    encoder_class: str | None = None,
    model_class: str | None = None,
    usage: str | None = None,
) -> ModelCard:
    """The card for ``task`` trained by ``recipe``; ``run_dir`` adds training and eval facts.

    ``encoder_class`` names the exported encoder when export converted the backbone;
    ``model_class`` and ``usage`` replace the root model's class and the usage section
    for exports that are not one transformers model (CLIP's dual-encoder folder).
    """
    run_dir = Path(run_dir) if run_dir is not None else None
    report = _read_json(run_dir / "eval" / "report.json") if run_dir else None
    rows = eval_rows(report) if report is not None else []
    data = card_data(recipe, task, rows)
    model_class = model_class or type(task.export_model()).__name__
    backbone_class = encoder_class or type(task.backbone).__name__
    repo = recipe.hub.repo_id or "PATH/TO/EXPORT"
    sections = [
        f"# {recipe.hub.repo_id or recipe.name}",
        f"A {_modality(task)} encoder pretrained with self-supervised **{recipe.task.name}** by "
        f"mmssl on {_data_name(recipe.data)} "
        f"(model preset `{recipe.model.preset}`; pretraining model `{model_class}`, "
        f"encoder `{backbone_class}`).",
        "## How to use\n\n" + (usage or _usage(recipe, task, model_class, repo)),
    ]
    training = _training_lines(run_dir)
    if training:
        sections.append("## Training\n\n" + "\n".join(training))
    if rows:
        table = ["| protocol | metric | value | random init |", "| --- | --- | --- | --- |"]
        table += [
            f"| {r['protocol']} | {r['metric']} | {r['value']:.4f} | "
            + (f"{r['baseline']:.4f} |" if r.get("baseline") is not None else "- |")
            for r in rows
        ]
        sections.append(
            "## Evaluation\n\nProbes of the pretrained encoder (and, for CLIP, cross-modal retrieval "
            "and zero-shot accuracy) by `mmssl eval`; the same on a randomly initialized model of "
            "the same shape give the floor.\n\n" + "\n".join(table)
        )
    recipe_yaml = yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False)
    sections.append(
        "## Recipe\n\nReproduce with `mmssl pretrain mmssl_recipe.yaml` "
        f"(the same file is in this repository).\n\n```yaml\n{recipe_yaml}```"
    )
    content = f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"
    return ModelCard(content)
