"""mmssl: self-supervised pretraining for images, text and audio, from recipe to Hub."""

__version__ = "0.1.0"
