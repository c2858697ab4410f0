"""Publishing runs: transformers-format export, model cards, push to the Hub, loading back."""

from mmssl.hub.export import ENCODER_DIR, export
from mmssl.hub.load import load_pretrained
from mmssl.hub.push import HubError, push

__all__ = ["ENCODER_DIR", "HubError", "export", "load_pretrained", "push"]
