"""Networks and their files.

Partial convolution, the four RNON networks, the model registry, safetensors weights.
Importing this package stays cheap (no torch): the networks register themselves when
:mod:`rnon_engine.nn.networks` is imported (the registry does it on demand).
"""
