"""Turning a recipe's ``data:`` section into examples the loop can batch."""
