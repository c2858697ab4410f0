"""Loading weights, in one place below the tasks: from runs, checkpoints, exports and Hub ids.

``load_run`` (a run directory back as its recipe and task), ``init_weights`` (``model.init_from``),
``load_backbone`` (``task.towers.<m>.init_from``), ``load_pretrained`` and ``load_dual_encoder``
(exported folders). Tasks are built through the ``TASKS`` registry, so nothing here imports a
task, the trainer, eval or the Hub code: those import this.
"""

from mmssl.weights.checkpoints import find_checkpoint, model_weights
from mmssl.weights.exports import (
    is_dual_encoder,
    is_pretrained_source,
    load_dual_encoder,
    load_pretrained,
)
from mmssl.weights.load import init_weights, load_backbone, load_run

__all__ = [
    "find_checkpoint", "init_weights", "is_dual_encoder", "is_pretrained_source", "load_backbone",
    "load_dual_encoder", "load_pretrained", "load_run", "model_weights",
]
