"""``anyclip.layers.conv.conv2d`` against torch's ``conv2d`` (zero padding ``k // 2``), every path it takes on
this backend: 1x1 as a matmul, depthwise (with channel multiplier) as shifted sums on the JAX CPU backend,
grouped and dense convolutions through ``keras.ops.conv``.
"""

import numpy as np
import pytest
import torch

from anyclip.layers.conv import conv2d


@pytest.mark.parametrize("k,stride,cin,cout,groups,size", [
    (1, 1, 8, 16, 1, 9),      # matmul
    (3, 1, 8, 8, 8, 9),       # depthwise
    (7, 2, 8, 8, 8, 13),      # depthwise, stride 2, odd size
    (3, 2, 6, 12, 6, 10),     # depthwise with multiplier 2
    (7, 2, 4, 8, 4, 11),
    (3, 1, 8, 8, 2, 7),       # grouped, not depthwise
    (3, 2, 3, 8, 1, 15),      # dense stem
])
def test_conv2d_equals_torch(k, stride, cin, cout, groups, size):
    rng = np.random.default_rng(k * 100 + cin)
    x = rng.standard_normal((2, size, size + 1, cin)).astype(np.float32)
    weight = rng.standard_normal((cout, cin // groups, k, k)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    ours = np.asarray(conv2d(x, weight.transpose(2, 3, 1, 0), bias, stride))
    theirs = torch.nn.functional.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(weight),
                                        torch.from_numpy(bias), stride, k // 2, 1, groups).permute(0, 2, 3, 1).numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-5)
