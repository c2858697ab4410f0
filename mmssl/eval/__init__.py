"""Downstream evaluation of pretrained backbones."""
