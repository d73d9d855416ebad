"""KD losses: KL / response KD, hint, relation KD (RKD) — hand-computed cases, special cases, gradcheck, errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from mmrobust.losses.kd import (
    ResponseKD,
    RKDLoss,
    hint_loss,
    kl_divergence,
    pairwise_distances,
    response_kd,
    rkd_angle,
    rkd_distance,
    rkd_loss,
)


def test_kl_hand_computed_two_classes():
    # p = softmax([ln 3, 0]) = [3/4, 1/4], q = softmax([0, 0]) = [1/2, 1/2]
    target = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
    logits = torch.zeros(1, 2, dtype=torch.float64)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert kl_divergence(logits, target).item() == pytest.approx(expected, rel=1e-12)
    assert kl_divergence(target, target).item() == pytest.approx(0.0, abs=1e-15)
    # it equals torch's KL with the target distribution as the reference
    torch.manual_seed(0)
    s, t = torch.randn(5, 4), torch.randn(5, 4)
    torch.testing.assert_close(
        kl_divergence(s, t), F.kl_div(s.log_softmax(1), t.log_softmax(1), log_target=True, reduction="batchmean")
    )


def test_response_kd_is_t_squared_kl_of_softened_logits():
    torch.manual_seed(1)
    s, t = torch.randn(6, 5), torch.randn(6, 5)
    torch.testing.assert_close(response_kd(s, t, temperature=1.0), kl_divergence(s, t))
    torch.testing.assert_close(response_kd(s, t, temperature=4.0), 16 * kl_divergence(s / 4, t / 4))
    assert ResponseKD(2.0)(s, t) == response_kd(s, t, 2.0)


def test_dense_logits_average_over_positions():
    torch.manual_seed(2)
    s, t = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    flat_s, flat_t = s.permute(0, 2, 3, 1).reshape(-1, 3), t.permute(0, 2, 3, 1).reshape(-1, 3)
    torch.testing.assert_close(kl_divergence(s, t), kl_divergence(flat_s, flat_t))


def test_hint_loss_is_mse():
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
    assert hint_loss(a, b).item() == pytest.approx(2.5)


def test_rkd_distance_hand_computed_and_scale_invariant():
    # student points 0, 1, 3 on a line: distances 1, 3, 2 (mean 2); teacher 0, 2, 4: distances 2, 4, 2 (mean 8/3)
    s = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    t = torch.tensor([[0.0], [2.0], [4.0]], dtype=torch.float64)
    ds = torch.tensor([[0, 1, 3], [1, 0, 2], [3, 2, 0]], dtype=torch.float64) / 2
    dt = torch.tensor([[0, 2, 4], [2, 0, 2], [4, 2, 0]], dtype=torch.float64) / (8 / 3)
    torch.testing.assert_close(pairwise_distances(s) / 2, ds)
    assert rkd_distance(s, t).item() == pytest.approx(F.smooth_l1_loss(ds, dt).item(), rel=1e-9)
    torch.manual_seed(3)
    f = torch.randn(7, 5)
    assert rkd_distance(3.0 * f, f).item() == pytest.approx(0.0, abs=1e-6)
    assert rkd_distance(torch.randn(7, 5), f).item() > 0.0


def test_rkd_angle_invariant_to_scale_and_translation():
    torch.manual_seed(4)
    f = torch.randn(6, 4)
    assert rkd_angle(2.0 * f + 1.0, f).item() == pytest.approx(0.0, abs=1e-6)
    assert rkd_angle(torch.randn(6, 4), f).item() > 0.0
    # a right angle vs a straight line at the middle point
    right = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    straight = torch.tensor([[1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]])
    assert rkd_angle(right, straight).item() > 0.0


def test_rkd_loss_weights_and_feature_sizes_may_differ():
    torch.manual_seed(5)
    s, t = torch.randn(5, 3, 2, 2), torch.randn(5, 7)
    total = rkd_loss(s, t, 25.0, 50.0)
    torch.testing.assert_close(total, 25 * rkd_distance(s, t) + 50 * rkd_angle(s, t))
    assert RKDLoss()(s, t) == total


def test_gradcheck_float64():
    torch.manual_seed(6)
    s = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: response_kd(a, t, 2.0), (s,))
    assert torch.autograd.gradcheck(lambda a: rkd_loss(a, t), (s,))
    assert torch.autograd.gradcheck(lambda a: hint_loss(a, t), (s,))


def test_errors_name_the_shapes():
    with pytest.raises(ValueError, match="one shape"):
        kl_divergence(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="temperature"):
        kl_divergence(torch.randn(4, 3), torch.randn(4, 3), temperature=0.0)
    with pytest.raises(ValueError, match="hint_loss"):
        hint_loss(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="one batch size"):
        rkd_distance(torch.randn(4, 3), torch.randn(5, 3))
