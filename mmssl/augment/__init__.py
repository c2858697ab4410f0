"""Random augmentations per modality; they run in DataLoader workers (``preprocess``), or on
the accelerator for image views with ``data.image.augment_on: device`` (``batched``)."""
