"""GradNorm: on toy problems the weights move to the gradient-norm targets; standard and anchored modes."""

import math

import pytest
import torch

from mmrobust.losses.gradnorm import GradNorm, gradient_norm


def toy_losses(w: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A primary loss and two auxiliary losses whose raw gradients on ``w`` differ by orders of magnitude."""
    primary = (w - 1.0).pow(2).sum()
    return primary, [100.0 * (w + 1.0).pow(2).sum(), 0.01 * (w - 3.0).pow(2).sum()]


def test_anchored_weights_move_to_a_tenth_of_the_primary_gradient_norm():
    torch.manual_seed(0)
    w = torch.randn(8, requires_grad=True)
    balancer = GradNorm(2, initial=[1.0, 1.0], ratios=[0.1, 0.1], lr=0.05)
    opt = torch.optim.SGD([w], lr=1e-3)
    errors = []
    for _ in range(300):
        primary, aux = toy_losses(w)
        step = balancer(aux, [w], anchor=primary)
        errors.append((step.ratios.log() - math.log(0.1)).abs().max().item())
        loss = primary + sum(weight * a for weight, a in zip(step.weights, aux))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert errors[0] > 3.0  # the first auxiliary task starts ~1000x too strong, the second ~100x too weak
    assert max(errors[-50:]) < 0.15  # within e^{±0.15} of the target ratio (steps of e^{±0.05})
    # the realized ratio: weighted auxiliary gradient norm over the primary's, both ~ 0.1
    primary, aux = toy_losses(w)
    g0 = gradient_norm(primary, [w])
    for weight, a in zip(balancer.weights, aux):
        assert (weight * gradient_norm(a, [w]) / g0).item() == pytest.approx(0.1, rel=0.2)


def test_standard_gradnorm_equalizes_gradient_norms_and_keeps_the_weight_sum():
    torch.manual_seed(1)
    w = torch.randn(5, requires_grad=True)
    balancer = GradNorm(2, lr=0.02)
    for _ in range(400):
        _, aux = toy_losses(w)
        step = balancer(aux, [w])
    assert balancer.weights.sum().item() == pytest.approx(2.0, rel=1e-5)
    assert step.ratios[0].item() == pytest.approx(1.0, rel=0.1)
    assert step.ratios[1].item() == pytest.approx(1.0, rel=0.1)
    assert balancer.weights[1] > 100 * balancer.weights[0]  # the weak-gradient task gets the large weight


def test_asymmetry_raises_the_target_of_the_task_that_trains_slower():
    w = torch.ones(3, requires_grad=True)
    balancer = GradNorm(2, asymmetry=1.0, lr=0.1)
    losses = [(w * 1.0).sum(), (w * 1.0).sum()]  # equal gradient norms, equal losses at the first step
    balancer(losses, [w])
    assert balancer.weights[0].item() == pytest.approx(balancer.weights[1].item())
    # same gradients, but task 0's loss halved while task 1's did not move: task 1 trains slower -> its weight rises
    balancer([w.sum() - 1.5, w.sum()], [w])
    assert balancer.weights[1] > balancer.weights[0]


def test_eval_mode_and_unused_tasks_do_not_update_and_state_is_a_buffer():
    w = torch.randn(4, requires_grad=True)
    balancer = GradNorm(2, initial=[0.5, 0.2], ratios=[0.1, 0.1])
    balancer.eval()
    balancer([w.sum(), w.pow(2).sum()], [w], anchor=w.sum())
    torch.testing.assert_close(balancer.weights, torch.tensor([0.5, 0.2]))
    balancer.train()
    step = balancer([w.sum(), torch.zeros(())], [w], anchor=(3 * w).sum())  # task 1 does not reach w
    assert balancer.weights[1].item() == pytest.approx(0.2)  # inactive: unchanged
    assert balancer.weights[0].item() != pytest.approx(0.5)
    assert step.ratios[1] == 0
    state = balancer.state_dict()
    assert {"log_weights", "initial_losses", "ratios"} <= set(state)
    again = GradNorm(2, initial=[0.5, 0.2], ratios=[0.1, 0.1])
    again.load_state_dict(state)
    torch.testing.assert_close(again.weights, balancer.weights)


def test_invalid_configuration_is_a_value_error():
    with pytest.raises(ValueError, match="initial weights and ratios"):
        GradNorm(2, initial=[1.0])
    with pytest.raises(ValueError, match="positive"):
        GradNorm(2, ratios=[0.1, -1.0])
    with pytest.raises(ValueError, match="built for 2 losses"):
        GradNorm(2)([torch.zeros(())], [torch.zeros(1)])
