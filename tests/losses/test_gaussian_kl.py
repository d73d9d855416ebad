"""DMRNet's distributional regularization: KL(N(μ, σ²) ‖ N(0, I)) summed per sample, batch mean."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from mmrobust.losses.gaussian_kl import GaussianKLLoss, gaussian_kl


def test_hand_computed_tiny_case():
    mu = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [0.0, -1.0]])
    # per element ½(σ² + μ² − log σ² − 1)
    sample0 = 0.0 + 0.5 * (4.0 + 1.0 - math.log(4.0) - 1.0)
    sample1 = 0.5 * (1.0 + 4.0 - 0.0 - 1.0) + 0.5 * (math.exp(-1.0) + 0.0 + 1.0 - 1.0)
    torch.testing.assert_close(gaussian_kl(mu, logvar, "none"), torch.tensor([sample0, sample1]))
    torch.testing.assert_close(gaussian_kl(mu, logvar), torch.tensor((sample0 + sample1) / 2))


def test_equals_torch_distributions_against_the_standard_normal_on_feature_maps():
    torch.manual_seed(0)
    mu, logvar = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    reference = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).flatten(1).sum(1)  # [B]
    torch.testing.assert_close(gaussian_kl(mu, logvar, "none"), reference)
    torch.testing.assert_close(GaussianKLLoss()(mu, logvar), reference.mean())


def test_zero_exactly_at_the_standard_normal_and_positive_elsewhere():
    assert gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)) == 0
    assert gaussian_kl(torch.zeros(2, 3), torch.full((2, 3), 0.5)) > 0


def test_gradcheck_float64():
    mu = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gaussian_kl, (mu, logvar))
    assert torch.autograd.gradcheck(lambda m, v: gaussian_kl(m, v, "none"), (mu, logvar))


def test_shape_and_reduction_errors_are_clear():
    with pytest.raises(ValueError, match="one shape"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="one shape"):
        gaussian_kl(torch.tensor(0.0), torch.tensor(0.0))
    with pytest.raises(ValueError, match="reduction"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3), "sum")  # type: ignore[arg-type]
