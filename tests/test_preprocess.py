import math

import torch

from l2l_core.optimizers.preprocess import preprocess_gradients


def test_values_at_hand_computed_points():
    p = 10.0
    g = torch.tensor([1.0, -math.e**-2, 0.0, 1e-6, -2e-5, math.exp(-p)], dtype=torch.float64)
    out = preprocess_gradients(g, p)
    expected = torch.tensor([
        [0.0, 1.0],                       # log(1)/10, sign
        [-0.2, -1.0],                     # log(e^-2)/10
        [-1.0, 0.0],                      # tiny branch: (-1, e^10 * 0)
        [-1.0, 1e-6 * math.exp(10)],      # 1e-6 < e^-10 ~ 4.54e-5
        [-1.0, -2e-5 * math.exp(10)],
        [-1.0, 1.0],                      # exactly at the threshold: log branch, log(e^-10)/10 = -1
    ], dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=1e-15)  # float64 log/exp: a few ulp


def test_features_are_continuous_at_threshold_in_first_component():
    p = 10.0
    eps = math.exp(-p)
    g = torch.tensor([eps * (1 - 1e-9), eps * (1 + 1e-9)], dtype=torch.float64)
    out = preprocess_gradients(g, p)
    # continuous features move by at most their slope times the input step (relative 2e-9 around eps): the first
    # (log|g|/p on one side, -1 = log(eps)/p on the other) by 1e-9/p, the second (e^p g, then sign) by 1e-9;
    # float64 rounding adds ~1e-16. A jump at the threshold would be many orders larger.
    assert abs(out[0, 0] - out[1, 0]) < 1e-9 / p + 1e-15
    assert abs(out[0, 1] - out[1, 1]) < 1e-9 + 1e-15  # e^p * eps == 1 == sign
