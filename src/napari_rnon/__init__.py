"""napari-rnon: the napari plugin, a thin shell over :mod:`rnon_engine`.

Nothing heavy is imported here: napari imports this package when it reads the manifest.
"""

__all__: list[str] = []
