"""Modality adapters: decode, preprocess, collate and mask one kind of input, build its backbone."""
