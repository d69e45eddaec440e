"""Training entry points, configurations and the corpus builder (not part of the wheel)."""
