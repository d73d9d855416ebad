"""ARL: coefficients, the gradient residual and its effect on the encoder gradients."""

import math

import pytest
import torch

from mmrobust.losses.gradient_residual import gradient_residual
from mmrobust.methods import METHODS, TrainState
from mmrobust.methods.arl import ARL, arl_coefficients, modality_statistics
from mmrobust.methods.unimodal import present_columns, unimodal_logits
from tests.conftest import batch_of, method_context, tiny_dataset, tiny_model


def test_two_modality_coefficients_hand_computed_equal_the_reference_formula():
    variance, dependence = torch.tensor([0.4, 1.2]), torch.tensor([3.0, 1.0])
    q, d, w = arl_coefficients(variance, dependence, torch.tensor([True, True]), temperature=4.0)
    # σ̂² = [0.25, 0.75] -> clamped at 0.3 -> [0.3, 0.75]; q ∝ [1/0.3, 1/0.75]
    torch.testing.assert_close(q, torch.tensor([2.5 / 3.5, 1.0 / 3.5]))
    torch.testing.assert_close(d, torch.tensor([0.75, 0.25]))
    # the reference code: softmax(T · [d_v · q_a, d_a · q_v])
    reference = torch.softmax(4.0 * torch.tensor([d[1] * q[0], d[0] * q[1]]), dim=0)
    torch.testing.assert_close(w, reference)
    e1, e2 = math.exp(4 * 0.25 * 2.5 / 3.5), math.exp(4 * 0.75 / 3.5)
    torch.testing.assert_close(w, torch.tensor([e1 / (e1 + e2), e2 / (e1 + e2)]))


def test_a_modality_without_statistics_gets_zero_and_leaves_the_others_as_with_two():
    valid = torch.tensor([True, False, True])
    q, d, w = arl_coefficients(torch.tensor([0.4, 9.0, 1.2]), torch.tensor([3.0, 9.0, 1.0]), valid, 4.0)
    q2, d2, w2 = arl_coefficients(torch.tensor([0.4, 1.2]), torch.tensor([3.0, 1.0]), torch.tensor([True, True]), 4.0)
    assert q[1] == d[1] == w[1] == 0
    torch.testing.assert_close(torch.stack([q[0], q[2], d[0], d[2], w[0], w[2]]), torch.cat([q2, d2, w2]))


def test_default_variance_floor_scales_with_the_number_of_modalities():
    variance = torch.tensor([0.1, 0.1, 0.8])  # normalized: 0.1, 0.1, 0.8 -> floor 0.2 for three modalities
    q, _, _ = arl_coefficients(variance, torch.ones(3), torch.ones(3, dtype=torch.bool), 1.0)
    torch.testing.assert_close(q, torch.tensor([5.0, 5.0, 1.25]) / 11.25)
    q_ref, _, _ = arl_coefficients(variance, torch.ones(3), torch.ones(3, dtype=torch.bool), 1.0, variance_floor=0.3)
    torch.testing.assert_close(q_ref, torch.tensor([1 / 0.3, 1 / 0.3, 1.25]) / (2 / 0.3 + 1.25))


def test_statistics_are_the_mean_entropy_and_logit_magnitude_over_present_samples():
    logits = {"a": torch.tensor([[0.0, 0.0], [2.0, -1.0]]), "c": torch.tensor([[1.0, 1.0], [5.0, 5.0]])}
    mask = torch.tensor([[True, True], [True, False]])
    variance, dependence, valid = modality_statistics(logits, mask, ("a", "b", "c"))
    p = torch.softmax(torch.tensor([2.0, -1.0]), 0)
    torch.testing.assert_close(
        variance, torch.stack([(math.log(2) - (p * p.log()).sum()) / 2, torch.tensor(0.0), torch.tensor(math.log(2))])
    )
    torch.testing.assert_close(dependence, torch.tensor([1.5, 0.0, 2.0]))
    assert valid.tolist() == [True, False, True]


# ---------------------------------------------------------------------------------- gradient residual
def test_gradient_residual_backward_is_the_derivative_of_the_scaled_identity_gradcheck():
    z = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(1.7, dtype=torch.float64)

    def surrogate(x):
        # value (1 + w)·x; autograd sees only the residual's backward, finite differences see (1 + w)·x
        return scale * x.detach() + gradient_residual(x, scale) - x.detach()

    assert torch.autograd.gradcheck(surrogate, (z,))
    assert torch.equal(gradient_residual(z, scale), z)


def test_gradient_residual_reads_its_scale_when_the_backward_runs():
    z = torch.ones(2, 3, requires_grad=True)
    scale = torch.ones(())
    y = gradient_residual(z, scale)
    scale.fill_(2.5)  # set after the forward, as ARL does once w is known
    y.sum().backward()
    assert torch.equal(z.grad, torch.full((2, 3), 2.5))


def test_gradient_residual_rejects_bad_scales():
    z = torch.ones(2, 3)
    with pytest.raises(ValueError, match="does not broadcast"):
        gradient_residual(z, torch.ones(4))
    with pytest.raises(ValueError, match="must not require a gradient"):
        gradient_residual(z, torch.ones((), requires_grad=True))


# --------------------------------------------------------------------------------------- the method
def grads(method, epoch):
    ds = tiny_dataset(missing_rate=0.2)
    model = tiny_model(ds)
    step = method(model, batch_of(ds, 32), TrainState(epoch=epoch))
    step.loss.backward()
    return step, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_encoder_gradients_are_scaled_by_one_plus_w_from_start_epoch():
    method = METHODS.build("arl", {"start_epoch": 3}, context=method_context())
    before, plain = grads(method, epoch=2)
    after, scaled = grads(method, epoch=3)
    torch.testing.assert_close(after.loss, before.loss)  # the residual changes gradients only
    for name, g in plain.items():
        m = name.split(".")[1] if name.startswith("encoders.") else None
        factor = 1.0 + float(after.terms[f"w_{m}"]) if m else 1.0
        assert factor > 1.0 or m is None
        torch.testing.assert_close(scaled[name], factor * g, rtol=1e-5, atol=1e-7, msg=name)


def test_terms_and_diagnostics_hold_q_d_w_of_present_modalities():
    ds = tiny_dataset()
    model = tiny_model(ds)
    method = ARL(method_context(), gamma=2.0)
    batch = batch_of(ds, 16).restrict(0b011)
    step = method(model, batch, TrainState(epoch=0))
    assert {"ce_fused", "ce_a", "ce_b", "w_a", "w_b"} == set(step.terms)
    torch.testing.assert_close(step.terms["w_a"] + step.terms["w_b"], torch.tensor(1.0))
    logits = unimodal_logits(model, model.encode(batch), batch.present)
    ce = [torch.nn.functional.cross_entropy(v, batch.target) for v in logits.values()]
    torch.testing.assert_close(step.loss, step.terms["ce_fused"] + 2.0 * sum(ce))
    assert present_columns(model, logits, batch.present).all()
    assert set(method.diagnostics._sums) == {f"arl/{k}/{m}" for k in "qdw" for m in "ab"}
