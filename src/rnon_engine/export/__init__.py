"""The model outside Python: ONNX graphs and bioimage.io packages.

- :mod:`rnon_engine.export.graphs`: branch-free wrappers of the generators (torch).
- :mod:`rnon_engine.export.onnx_export`: writes the ONNX files (``export_onnx``).
- :mod:`rnon_engine.export.bioimageio_package`: writes a bioimage.io model package.
- :mod:`rnon_engine.export.cli`: ``python -m training.export``.

Running an exported model needs only ONNX Runtime and numpy:
:mod:`rnon_engine.inference.onnx_model`.
"""
