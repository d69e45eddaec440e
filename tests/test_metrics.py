import numpy as np
import pytest

from rnon_engine import InputError
from rnon_engine.metrics import hole_l1, psnr, score_repair, ssim


def test_psnr_of_known_mse():
    truth = np.zeros((8, 8, 3))
    result = np.full((8, 8, 3), 0.1)  # MSE = 0.01 -> 10*log10(1/0.01) = 20 dB
    assert psnr(truth, result) == pytest.approx(20.0)
    result[0, 0, 0] = 0.0
    mse = (8 * 8 * 3 - 1) * 0.01 / (8 * 8 * 3)
    assert psnr(truth, result) == pytest.approx(10 * np.log10(1 / mse))
    assert psnr(truth, truth) == float("inf")


def test_ssim():
    rng = np.random.default_rng(0)
    a = rng.random((32, 32, 3))
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 1 - a) < 0.1
    assert ssim(a[..., 0], a[..., 0]) == pytest.approx(1.0)


def test_hole_l1():
    truth = np.zeros((4, 4))
    result = truth.copy()
    result[0, 0], result[3, 3] = 0.5, 1.0
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[1, 1] = True
    assert hole_l1(truth, result, mask) == pytest.approx(0.25)  # (0.5 + 0) / 2
    with pytest.raises(InputError, match="empty"):
        hole_l1(truth, result, np.zeros((4, 4)))
    with pytest.raises(InputError, match="shape"):
        psnr(truth, np.zeros((4, 5)))


def test_score_repair_units_cap_and_changed_outside():
    truth = np.zeros((8, 8, 3), np.uint8)
    hole = np.zeros((8, 8), bool)
    hole[2:4, 2:4] = True
    same = score_repair(truth, truth.copy(), hole)
    assert same["psnr"] == 100.0 and same["l1"] == 0.0 and same["changed_outside"] == 0.0
    result = truth.copy()
    result[hole] = 51  # 0.2 in [0, 1] units: uint8 is divided by 255
    result[0, 0, 1] = 255  # one known pixel changed (any channel counts)
    sc = score_repair(truth, result, hole, max_psnr=30.0)
    assert sc["l1"] == pytest.approx(0.2)
    assert sc["changed_outside"] == pytest.approx(1 / 60)
    assert sc["psnr"] < 30.0
    assert score_repair(truth, truth, hole, max_psnr=30.0)["psnr"] == 30.0
