"""Backbones: one file per transformers encoder family, registered in ``BACKBONES``."""
