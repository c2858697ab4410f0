"""Publishing runs: transformers-format export, model cards, push to the Hub (loading back: ``mmssl.weights``)."""

from mmssl.hub.export import ENCODER_DIR, export
from mmssl.hub.push import HubError, push

__all__ = ["ENCODER_DIR", "HubError", "export", "push"]
