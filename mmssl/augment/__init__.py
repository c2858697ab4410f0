"""Random augmentations per modality; they run in DataLoader workers (``preprocess``)."""
