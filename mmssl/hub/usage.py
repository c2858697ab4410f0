"""The "How to use" section of a model card: code that runs on the export as written.

The snippets load exactly what the export holds (no pooler the backbone was built without,
so transformers reports nothing missing), pool the encoder's output as ``mmssl eval``
does, and call the pipeline the card's ``pipeline_tag`` names. ``tests/test_hub_exports.py``
executes them on every task's export.
"""

from __future__ import annotations

from typing import Any

from mmssl.hub.formats import FORMATS, ExportParts, load_kwargs
from mmssl.weights.exports import PRETRAINING_DIR

#: the pipeline call of tags that take more than the modality's input.
_PIPELINE_CALLS = {
    "zero-shot-image-classification": 'image, candidate_labels=["a photo of a cat", "a photo of a dog"]',
}
#: what a user should know about a tag's pipeline on a self-supervised encoder.
_PIPELINE_NOTES = {
    "audio-classification": " Its classification head is new (transformers initialises it at load): "
                            "fine-tune it before its labels mean anything.",
}


def _kwargs(model: Any) -> str:
    return "".join(f", {k}={v!r}" for k, v in load_kwargs(model).items())


def _pipeline_call(parts: ExportParts) -> str:
    if parts.pipeline_tag == "fill-mask":
        return f'"some {parts.processor.mask_token} text"'
    return _PIPELINE_CALLS.get(parts.pipeline_tag, parts.format.pipeline_call)


def _pipeline_code(parts: ExportParts) -> str:
    """The pipeline of the card's ``pipeline_tag`` on the root (nothing when none runs it)."""
    if parts.pipeline_tag is None:
        return ""
    kwargs = load_kwargs(parts.root)
    pairs = ", ".join(f'"{k}": {v!r}' for k, v in kwargs.items())
    model_kwargs = f", model_kwargs={{{pairs}}}" if kwargs else ""
    return (f'\npipe = pipeline("{parts.pipeline_tag}", model=repo{model_kwargs})\n'
            f"result = pipe({_pipeline_call(parts)})\n")


def _root_line(parts: ExportParts, recipe: Any, repo: str) -> str:
    encoder = type(parts.encoder).__name__
    if parts.pretraining is not None:
        head = type(parts.pretraining).__name__
        return (
            f"`AutoModel` on the root gives the same `{encoder}` (so do the pipeline and a Hub id). The "
            f"pretraining model with its head, `{head}`, is in `{PRETRAINING_DIR}/` "
            f'(`AutoModelForPreTraining.from_pretrained(repo, subfolder="{PRETRAINING_DIR}")`), to '
            f"continue pretraining with transformers or with mmssl (`model.init_from: {repo}` in a recipe)."
        )
    if parts.root is parts.encoder:
        pipe = "the pipeline, " if parts.pipeline_tag else "(no transformers pipeline runs it on raw input) "
        return (f"The root holds the same `{encoder}`, for {pipe}`AutoModel.from_pretrained(repo)` "
                f"and mmssl (`model.init_from: {repo}` in a recipe, to continue pretraining).")
    return (
        f"The root holds `{type(parts.root).__name__}`, the encoder with its {recipe.task.name} head: the "
        "pipeline loads it, and it continues pretraining with transformers or with mmssl "
        f"(`model.init_from: {repo}` in a recipe)."
    )


def encoder_usage(parts: ExportParts, recipe: Any, pooling: str, repo: str) -> str:
    """Features with ``AutoModel`` and the processor, pooled as mmssl pools; then the pipeline."""
    fmt = parts.format
    pooled = fmt.pooled.get(pooling, next(iter(fmt.pooled.values())))
    return (
        "```python\n"
        f"from transformers import AutoModel, {fmt.processor_loader}"
        f"{', pipeline' if parts.pipeline_tag else ''}\n\n"
        f'repo = "{repo}"  # {fmt.given}\n'
        f'processor = {fmt.processor_loader}.from_pretrained(repo, subfolder="encoder")\n'
        f'encoder = AutoModel.from_pretrained(repo, subfolder="encoder"{_kwargs(parts.encoder)})\n'
        f'inputs = processor({fmt.processor_call}, return_tensors="pt")\n'
        f"outputs = {fmt.forward}\n"
        "hidden = outputs.last_hidden_state\n"
        f"features = {pooled}  # as `mmssl eval` pools ({pooling})\n"
        f"{_pipeline_code(parts)}"
        "```\n\n"
        f"{_root_line(parts, recipe, repo)}{_PIPELINE_NOTES.get(parts.pipeline_tag or '', '')}"
    )


def dual_encoder_usage(task: Any, repo: str) -> str:
    """How to use a dual-encoder export: each tower with transformers, the whole with mmssl."""
    loads = []
    for modality in task.modalities:
        fmt = FORMATS[modality]
        loads.append(
            f'{modality}_processor = {fmt.processor_loader}.from_pretrained(repo, subfolder="{modality}")\n'
            f'{modality}_model = AutoModel.from_pretrained(repo, subfolder="{modality}"'
            f"{_kwargs(task.towers[modality].model)})\n"
            f"{modality}_states = {modality}_model(**{modality}_processor({fmt.processor_call}, "
            'return_tensors="pt")).last_hidden_state'
        )
    processors = ", ".join(sorted({FORMATS[m].processor_loader for m in task.modalities}))
    pooling = ", ".join(f"{m}: `{task.towers[m].pooling}`" for m in task.modalities)
    return (
        "Each tower is a plain transformers model in its own folder:\n\n"
        "```python\n"
        f"from transformers import AutoModel, {processors}\n\n"
        f'repo = "{repo}"\n' + "\n".join(loads) + "\n```\n\n"
        f"The shared embedding is the pooled state ({pooling}) through the projection in "
        "`projections.safetensors`, L2-normalised; `mmssl_dual_encoder.json` describes it. "
        "No transformers class or pipeline loads the pair, so the card names no `pipeline_tag`; "
        "mmssl rebuilds the whole model (towers, pooling, projections, logit scale):\n\n"
        "```python\n"
        "from huggingface_hub import snapshot_download\n"
        "from mmssl.weights import load_dual_encoder\n"
        "from mmssl.eval.alignment import embed_values\n\n"
        f'model = load_dual_encoder(snapshot_download("{repo}"))  # or a local folder\n'
        f'embeddings = embed_values(model, "{task.modalities[0]}", [...])  # raw cells, as in the data set\n'
        "```\n\n"
        "`mmssl retrieval FOLDER` scores retrieval on the recipe's test data; "
        "`task.towers.<modality>.init_from: FOLDER` in a clip recipe starts a tower from it."
    )
