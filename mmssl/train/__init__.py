"""The modality-agnostic training loop and its helpers."""
