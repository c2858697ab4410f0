"""Downstream heads: classification and projection modules shared by tasks and eval."""
