"""Loss functions as plain functions of tensors, shared by tasks and tests."""
