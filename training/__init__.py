"""Training entry points and the corpus builder (not part of the wheel).

The YAML configurations live in the package, ``src/rnon_engine/train/configs/``.
"""
