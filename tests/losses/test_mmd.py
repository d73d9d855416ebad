"""Multi-kernel Gaussian MMD² and the JDN terms: hand-computed case, special cases, gradcheck, maps, errors."""

import math

import pytest
import torch

from mmrobust.losses.kd import kl_divergence
from mmrobust.losses.mmd import MMDLoss, gaussian_kernel_sum, jdn_loss, mmd2


def test_hand_computed_two_points():
    # pooled samples {0, 1}: squared distances 0, 1, 1, 0 -> base bandwidth 2 / (4 - 2) = 1, divided by 2^(5//2)
    # -> bandwidths 0.25, 0.5, 1, 2, 4.  k(x,x) = k(y,y) = 5, k(x,y) = Σ_q exp(-1/σ_q).
    x, y = torch.tensor([[0.0]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)
    expected = sum(2 - 2 * math.exp(-1 / s) for s in (0.25, 0.5, 1.0, 2.0, 4.0))
    assert mmd2(x, y).item() == pytest.approx(expected, rel=1e-12)
    # a fixed base bandwidth replaces the heuristic: σ = 4 -> bandwidths 1, 2, 4, 8, 16
    fixed = sum(2 - 2 * math.exp(-1 / s) for s in (1.0, 2.0, 4.0, 8.0, 16.0))
    assert mmd2(x, y, bandwidth=4.0).item() == pytest.approx(fixed, rel=1e-12)


def test_zero_for_identical_samples_positive_and_symmetric():
    torch.manual_seed(0)
    x, y = torch.randn(16, 5), torch.randn(12, 5) + 1.0
    assert mmd2(x, x).item() == 0.0
    assert mmd2(x, y).item() > 0.1
    assert mmd2(x, y).item() == pytest.approx(mmd2(y, x).item(), rel=1e-6)
    # more different distributions are further apart
    assert mmd2(x, y + 2.0).item() > mmd2(x, y).item()


def test_large_bandwidth_limit_is_the_linear_kernel_mmd():
    # k(u, v) = exp(-‖u−v‖²/σ) ≈ 1 − ‖u−v‖²/σ for σ ≫ distances, and then MMD² = (2/σ) ‖mean x − mean y‖²
    torch.manual_seed(1)
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(15, 3, dtype=torch.float64) + 0.5
    sigma = 1e5
    linear = 2 / sigma * (x.mean(0) - y.mean(0)).pow(2).sum()
    torch.testing.assert_close(mmd2(x, y, kernel_num=1, bandwidth=sigma), linear, rtol=1e-3, atol=0.0)


def test_gradcheck_float64():
    torch.manual_seed(2)
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: mmd2(a, b, bandwidth=3.0), (x, y))


def test_heuristic_bandwidth_carries_no_gradient():
    # the reference code computes σ from detached distances: the gradient equals the fixed-σ gradient
    torch.manual_seed(3)
    x, y = torch.randn(8, 3, requires_grad=True), torch.randn(8, 3)
    z = torch.cat([x, y]).detach()
    base = ((z[:, None] - z[None]) ** 2).sum() / (16 * 16 - 16)
    (g_heuristic,) = torch.autograd.grad(mmd2(x, y), x)
    (g_fixed,) = torch.autograd.grad(mmd2(x, y, bandwidth=float(base)), x)
    torch.testing.assert_close(g_heuristic, g_fixed)


def test_feature_maps_are_flattened_per_sample():
    torch.manual_seed(4)
    x, y = torch.randn(6, 2, 3, 3), torch.randn(7, 2, 3, 3)
    torch.testing.assert_close(mmd2(x, y), mmd2(x.flatten(1), y.flatten(1)))
    assert MMDLoss()(x, y) == mmd2(x, y)


def test_kernel_sum_is_a_gram_matrix():
    torch.manual_seed(5)
    k = gaussian_kernel_sum(torch.randn(4, 3), torch.randn(3, 3))
    assert k.shape == (7, 7)
    torch.testing.assert_close(k, k.t())
    torch.testing.assert_close(k.diagonal(), torch.full((7,), 5.0))  # 5 kernels, each 1 at distance 0
    assert torch.linalg.eigvalsh(k.double()).min() > -1e-6  # positive semi-definite


def test_jdn_terms_are_mmd_and_the_conditional_kl():
    torch.manual_seed(6)
    zs, zp = torch.randn(8, 4), torch.randn(8, 4)
    ls, lp = torch.randn(8, 3), torch.randn(8, 3)
    marginal, conditional = jdn_loss(zs, zp, ls, lp)
    torch.testing.assert_close(marginal, mmd2(zs, zp))
    # KL(p ‖ q) with p from the privileged logits, q from the hallucinated ones (paper Eq. 4)
    p, q = lp.softmax(1), ls.softmax(1)
    torch.testing.assert_close(conditional, (p * (p.log() - q.log())).sum(1).mean())
    assert conditional == kl_divergence(ls, lp)
    _, same = jdn_loss(zs, zp, lp, lp)
    assert same.abs() < 1e-6


def test_errors_name_the_shapes():
    with pytest.raises(ValueError, match="one feature shape"):
        mmd2(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="at least one sample"):
        mmd2(torch.randn(0, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match="kernel_num"):
        mmd2(torch.randn(4, 3), torch.randn(4, 3), kernel_num=0)
    with pytest.raises(ValueError, match="paired samples"):
        jdn_loss(torch.randn(4, 3), torch.randn(5, 3), torch.randn(4, 2), torch.randn(5, 2))
