"""One device rule for inference and training (rnon_engine.device)."""

import subprocess
import sys

import pytest
import torch

import rnon_engine.inference.inpainter as inpainter
import rnon_engine.train.trainer as trainer
from rnon_engine import InputError
from rnon_engine.device import resolve_device


def test_inference_and_training_share_one_rule():
    assert inpainter.resolve_device is resolve_device
    assert trainer.resolve_device is resolve_device


@pytest.mark.skipif(
    torch.cuda.is_available() or torch.backends.mps.is_available(), reason="CPU-only check"
)
def test_auto_without_an_accelerator_is_the_cpu():
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None, local_rank=1) == torch.device("cpu")
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda:0")


def test_bad_device_names():
    with pytest.raises(InputError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    assert resolve_device("cpu") == torch.device("cpu")


def test_classical_methods_import_neither_torch_nor_the_orchestrator():
    """classical.py is the method list's home: napari and the batch driver import it cheaply."""
    code = (
        "import sys; import rnon_engine.inference.classical as c, "
        "rnon_engine.inference.weights_source, rnon_engine.inference.settings; "
        "print('torch' in sys.modules, 'rnon_engine.inference.inpainter' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
