"""``python -m training.export``: the model as ONNX files or a bioimage.io package.

A thin wrapper of :mod:`rnon_engine.export.cli` (see there and ``docs/export.md``).
"""

from __future__ import annotations

import sys

from rnon_engine.export.cli import main

if __name__ == "__main__":
    sys.exit(main())
