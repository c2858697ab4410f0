"""Evaluation reports: ``report.json``, a Markdown table and PNG plots.

The JSON holds everything (settings, sizes, every protocol at every label fraction for the
pretrained backbone and its baselines: random init, raw input, supervised from scratch) and
one verdict line per protocol; the Markdown and plots are views of it. :class:`EvalReport`
is its shape, which the model card (``mmssl.hub.card``) reads.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

#: baselines of ``results`` (beside ``pretrained``) and how reports name them
BASELINES = {"random_init": "random init", "raw_input": "raw input", "supervised_from_scratch": "supervised from scratch"}
#: line style of each model in the label-efficiency plot
_STYLES = {"pretrained": "-o", "random_init": "--x", "raw_input": ":s", "supervised_from_scratch": "-.^"}


@dataclass
class EvalReport:
    """``report.json`` as ``mmssl eval`` writes it. ``results``: model (``pretrained`` and the
    baselines of ``BASELINES``) -> protocol -> label fraction (``"0.1"``) -> scores (``top1``,
    ``top5``, ...); ``alignment`` (clip runs): model -> retrieval and zero-shot scores. A report
    of the alignment protocol alone has no sizes, data or probe results."""

    task: str = ""
    results: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    run_dir: str = ""
    checkpoint: str = ""
    num_classes: int | None = None
    #: examples of the train (less validation), validation and test splits
    sizes: dict[str, int] = field(default_factory=dict)
    skipped_test_examples: int = 0
    skipped_label_rows: int = 0
    #: ``train``: the data section the probes read (as in a recipe); ``test_split``
    data: dict[str, Any] = field(default_factory=dict)
    #: the ``eval:`` section it ran with
    settings: dict[str, Any] = field(default_factory=dict)
    alignment: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float | None = None
    verdicts: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, report: dict[str, Any]) -> EvalReport:
        """The report of a ``report.json``; keys a newer mmssl adds are left out."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in report.items() if k in names})

    @classmethod
    def from_json(cls, path: Path) -> EvalReport:
        return cls.from_dict(json.loads(path.read_text()))


def _fraction_label(fraction: str) -> str:
    return f"{float(fraction) * 100:g}%"


def alignment_rows(section: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A report's ``alignment`` section as rows: retrieval R@k each way and zero-shot top-k,
    with the random-init score and chance (R@1 and top-1) beside the trained one."""
    if not section:
        return []
    trained, floor = section["pretrained"], section["random_init"]
    rows = []
    for key, value in trained.get("retrieval", {}).items():
        direction, metric = key.split("/")
        if metric.startswith("R@"):
            chance = trained["retrieval"][f"{direction}/chance@1"] if metric == "R@1" else None
            rows.append({"protocol": f"retrieval {direction.replace('_', ' ')}", "metric": metric,
                         "value": value, "random_init": floor["retrieval"][key], "chance": chance})
    for name, scores in trained.get("zero_shot", {}).items():
        for metric in ("top1", "top5"):
            if metric in scores:
                rows.append({"protocol": f"zero-shot {name.replace('_', ' ')}", "metric": metric,
                             "value": scores[metric], "random_init": floor["zero_shot"][name][metric],
                             "chance": scores["chance"] if metric == "top1" else None})
    return rows


def _alignment_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"Alignment on the `{report['alignment']['pretrained']['split']}` split "
        f"({report['alignment']['pretrained']['pairing']} pairing):",
        "",
        "| protocol | metric | pretrained | random init | gain | chance |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in alignment_rows(report["alignment"]):
        chance = "-" if row["chance"] is None else f"{row['chance']:.4f}"
        lines.append(
            f"| {row['protocol']} | {row['metric']} | {row['value']:.4f} | {row['random_init']:.4f} | "
            f"{row['value'] - row['random_init']:+.4f} | {chance} |"
        )
    return lines


def _top1(results: dict[str, Any], model: str, protocol: str, fraction: str) -> float | None:
    scores = results.get(model, {}).get(protocol, {}).get(fraction)
    return None if scores is None else scores["top1"]


def baseline_verdicts(results: dict[str, Any]) -> dict[str, str]:
    """One line per protocol: at which label fractions the pretrained top-1 beats each
    baseline, with the gap where it does not."""
    verdicts = {}
    for protocol, by_fraction in results["pretrained"].items():
        parts = []
        for model, name in BASELINES.items():
            floors = {f: _top1(results, model, protocol, f) for f in by_fraction}
            floors = {f: v for f, v in floors.items() if v is not None}
            if not floors:
                continue
            misses = [f for f, v in floors.items() if by_fraction[f]["top1"] <= v]
            if not misses:
                parts.append(f"beats {name} at every label fraction")
                continue
            gaps = ", ".join(f"{_fraction_label(f)}: {by_fraction[f]['top1'] - floors[f]:+.4f}" for f in misses)
            wins = [_fraction_label(f) for f in floors if f not in misses]
            where = f"at {', '.join(wins)} only" if wins else "at no label fraction"
            parts.append(f"beats {name} {where} (not at {gaps})")
        verdicts[protocol] = f"{protocol}: pretrained " + ("; ".join(parts) or "has no baseline") + "."
    return verdicts


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def markdown_table(report: dict[str, Any]) -> str:
    """One row per (protocol, label fraction): top-1 of the pretrained model and of each
    baseline; the verdict line of each protocol; then the alignment rows of a clip run."""
    results = report["results"]
    lines = [f"# Evaluation of `{report['run_dir']}`", ""]
    if not results["pretrained"]:
        lines.append(f"Task `{report['task']}`, checkpoint `{report['checkpoint']}`.")
        return "\n".join(lines + _alignment_table(report)) + "\n"
    lines += [
        f"Task `{report['task']}`, checkpoint `{report['checkpoint']}`, "
        f"{report['sizes']['train']} train / {report['sizes']['val']} val / "
        f"{report['sizes']['test']} test examples, {report['num_classes']} classes, "
        f"pooling `{report['settings']['pooling']}`.",
        "",
        "| protocol | labels | pretrained top-1 | "
        + " | ".join(f"{name} top-1" for name in BASELINES.values())
        + " | pretrained top-5 |",
        "| --- | --- | --- | " + "--- | " * len(BASELINES) + "--- |",
    ]
    for protocol, by_fraction in results["pretrained"].items():
        for fraction, scores in by_fraction.items():
            floors = [_cell(_top1(results, model, protocol, fraction)) for model in BASELINES]
            lines.append(
                f"| {protocol} | {_fraction_label(fraction)} | {scores['top1']:.4f} | "
                + " | ".join(floors) + f" | {scores['top5']:.4f} |"
            )
    lines += [""] + [f"- {line}" for line in baseline_verdicts(results).values()]
    if report.get("alignment"):
        lines += _alignment_table(report)
    return "\n".join(lines) + "\n"


def plot_label_efficiency(report: dict[str, Any], path: Path) -> None:
    """Top-1 vs label fraction (log x), one colour per protocol, one line style per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    results = report["results"]
    for i, protocol in enumerate(results["pretrained"]):
        for model, style in _STYLES.items():
            by_fraction = results.get(model, {}).get(protocol)
            if not by_fraction:
                continue
            xs = [float(f) * 100 for f in by_fraction]
            ys = [s["top1"] for s in by_fraction.values()]
            ax.plot(xs, ys, style, color=f"C{i}", label=f"{protocol} ({model.replace('_', ' ')})")
    ax.set_xscale("log")
    ax.set_xlabel("training labels used (%)")
    ax.set_ylabel("test top-1 accuracy")
    ax.set_title(f"Label efficiency: {report['task']}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def pca_2d(x: torch.Tensor) -> torch.Tensor:
    """The first two principal components of ``x``."""
    centered = x.float() - x.float().mean(0)
    _, _, v = torch.linalg.svd(centered, full_matrices=False)
    return centered @ v[:2].T


def plot_features(features: dict[str, tuple[torch.Tensor, torch.Tensor]], path: Path, limit: int = 2000) -> None:
    """PCA of test features coloured by class, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(features), figsize=(5 * len(features), 4.5), squeeze=False)
    for ax, (name, (x, y)) in zip(axes[0], features.items()):
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:limit]
        points = pca_2d(x[keep])
        scatter = ax.scatter(points[:, 0], points[:, 1], c=y[keep], cmap="tab10", s=4)
        ax.set_title(f"{name.replace('_', ' ')}: PCA of test features")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(scatter, ax=axes[0].tolist(), label="class")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(
    report: dict[str, Any], out_dir: Path, test_features: dict[str, tuple[torch.Tensor, torch.Tensor]]
) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, and with probe results ``label_efficiency.png``
    and ``features_pca.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    if report["results"]["pretrained"]:
        paths["label_efficiency"] = out_dir / "label_efficiency.png"
        paths["features"] = out_dir / "features_pca.png"
        plot_label_efficiency(report, paths["label_efficiency"])
        plot_features(test_features, paths["features"])
        report["verdicts"] = baseline_verdicts(report["results"])
    report["files"] = {k: p.name for k, p in paths.items()}
    paths["markdown"].write_text(markdown_table(report))
    paths["json"].write_text(json.dumps(report, indent=2))
    return paths
