"""OGM-GE: scores, coefficients, gradient modulation and the generalization-enhancement noise."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmrobust.methods import TrainState
from mmrobust.methods.ogm_ge import OGMGE, concat_head, concat_logits, modality_scores, noise_seed, ogm_coefficients
from mmrobust.methods.unimodal import unimodal_logits
from tests.conftest import MLP, batch_of, method_context, tiny_dataset, tiny_model

CONCAT = {"encoder": {"name": "mlp", "hidden": [16], "out_features": 8}, "fusion": {"name": "concat"}}


def test_coefficients_hand_computed():
    rho, k = ogm_coefficients(torch.tensor([0.6, 0.3]), torch.tensor([True, True]), alpha=0.8)
    torch.testing.assert_close(rho, torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(k, torch.tensor([1 - math.tanh(1.6), 1.0]))
    rho, k = ogm_coefficients(torch.tensor([0.6, 0.3, 0.3, 0.9]), torch.tensor([True, True, True, False]), 0.1)
    torch.testing.assert_close(rho, torch.tensor([2.0, 0.3 / 0.45, 0.3 / 0.45, 1.0]))  # mean of the others
    torch.testing.assert_close(k, torch.tensor([1 - math.tanh(0.2), 1.0, 1.0, 1.0]))
    rho, k = ogm_coefficients(torch.tensor([0.6, 0.0]), torch.tensor([True, False]), 0.8)  # alone: no ratio
    assert rho.tolist() == k.tolist() == [1.0, 1.0]


def test_concat_scores_hand_computed_on_a_tiny_batch():
    ds = tiny_dataset(modalities=["a", "b"], snr=[2.0, 0.5])
    model = tiny_model(ds, CONCAT)
    batch = batch_of(ds, 6)
    features = model.encode(batch)
    fc = concat_head(model)
    assert fc is not None and concat_head(tiny_model(ds, MLP)) is None  # concat_mlp has no per-view slices
    w, b = fc.weight.detach(), fc.bias.detach()
    expected = []
    for j, m in enumerate("ab"):
        logits = features[m].detach() @ w[:, 8 * j : 8 * (j + 1)].T + b / 2
        expected.append(torch.softmax(logits, 1)[torch.arange(6), batch.target].mean())
    scores = modality_scores(model, features, batch)
    torch.testing.assert_close(scores, torch.tensor([[expected[0], expected[1]], [6.0, 6.0]]))


class Wrapped(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, feats, present):
        return self.inner(feats, present)


def test_general_form_equals_the_concat_slices_with_the_whole_bias():
    """For concat + linear head, head(fuse(z, {u})) = W^u z^u + b: the general form differs from the
    paper's only by the bias split (b instead of b/V); with b = 0 the ratios coincide."""
    ds = tiny_dataset()
    model = tiny_model(ds, CONCAT)
    batch = batch_of(ds, 16)
    features = model.encode(batch)
    fc = concat_head(model)
    general = unimodal_logits(model, features, batch.present)
    exact = concat_logits(model, fc, features, bias_share=1.0)
    for m in model.modalities:
        torch.testing.assert_close(exact[m], general[m], rtol=0, atol=1e-6)
    with torch.no_grad():
        fc.bias.zero_()
    paper = modality_scores(model, features, batch)  # b/V
    model.fusion = Wrapped(model.fusion)  # the same function, but not a Concat: the general form is used
    assert concat_head(model) is None
    torch.testing.assert_close(modality_scores(model, features, batch), paper)


def modulated(epoch, step=7, seed=3, end_epoch=50):
    ds = tiny_dataset(modalities=["a", "b"], snr=[3.0, 0.2])
    model = tiny_model(ds, CONCAT)
    method = OGMGE(method_context(dataset_overrides={"modalities": ["a", "b"], "snr": [3.0, 0.2]}), end_epoch=end_epoch)
    state = TrainState(epoch=epoch, step=step, seed=seed)
    method(model, batch_of(ds, 32), state).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    k = method.coefficients.clone()
    method.after_backward(model, state)
    return model, k, plain, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_encoder_gradients_are_scaled_by_k_plus_noise_of_their_std():
    model, k, plain, after = modulated(epoch=0)
    assert sorted(k.tolist())[1] == 1 and k.min() < 1  # with two modalities exactly one has ρ > 1
    params = [n for m in model.modalities for n, _ in model.encoders[m].named_parameters(prefix=f"encoders.{m}")]
    for index, name in enumerate(params):
        g = plain[name]
        gen = torch.Generator().manual_seed(noise_seed(3, 7, index))
        noise = torch.randn(g.shape, generator=gen) * g.std(correction=0)
        factor = k[model.modalities.index(name.split(".")[1])]
        torch.testing.assert_close(after[name], factor * g + noise, msg=name)
    for name in plain:
        if not name.startswith("encoders."):
            assert torch.equal(after[name], plain[name]), name  # fusion/head untouched


def test_noise_only_within_the_epoch_window_and_identical_under_the_same_seed():
    _, _, plain, outside = modulated(epoch=50)
    assert all(torch.equal(outside[n], plain[n]) for n in plain)
    _, _, _, first = modulated(epoch=3)
    _, _, _, again = modulated(epoch=3)
    _, _, _, other_step = modulated(epoch=3, step=8)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not torch.equal(first["encoders.b.net.0.weight"], other_step["encoders.b.net.0.weight"])


@pytest.mark.parametrize("config", [MLP, CONCAT])
def test_terms_log_rho_and_k_and_the_loss_is_plain_cross_entropy(config):
    ds = tiny_dataset()
    model = tiny_model(ds, config)
    batch = batch_of(ds, 16)
    step = OGMGE(method_context())(model, batch, TrainState())
    torch.testing.assert_close(step.loss, F.cross_entropy(model(batch), batch.target))
    assert {f"{t}_{m}" for t in ("rho", "k") for m in "abc"} | {"ce"} == set(step.terms)
