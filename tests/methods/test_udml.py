"""UDML (method=udml): weights, losses, noise injection, warm-up, one training step, the CLI."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import torch

from mmrobust.losses.gaussian_kl import gaussian_kl
from mmrobust.losses.udml import embedding_kl, level_loss, prior_kl
from mmrobust.methods import METHODS, TrainState
from mmrobust.methods.udml import UDML, draw_levels
from mmrobust.methods.unimodal import unimodal_logits
from mmrobust.models.udml_fusion import UDMLFusion, dependence_weights, inverse_variance_weights, scale_features
from mmrobust.registry import ConfigError
from tests.conftest import MLP, SURF_TINY, batch_of, method_context, run_cli, tiny_dataset, tiny_model

T, F = True, False


def build(config=None, dataset=None, **options):
    method = METHODS.build("udml", {"hidden": 8, **options}, context=method_context())
    assert isinstance(method, UDML)
    ds = dataset or tiny_dataset()
    model = tiny_model(ds, method.model_config(config or MLP))
    method.prepare(model)
    return method, model, ds


# ------------------------------------------------------------------------------------------------ weights
def test_inverse_variance_weights_hand_cases_and_the_two_modality_reference_formula():
    v = torch.tensor([[1.0, 4.0], [2.0, 3.0]])
    w = inverse_variance_weights(v, torch.ones(2, 2, dtype=torch.bool))
    torch.testing.assert_close(w[0], torch.tensor([1.6, 0.4]))  # 2·(1/1)/(1 + 1/4), 2·(1/4)/(5/4)
    ref = torch.stack([2 * v[:, 1] / v.sum(1), 2 * v[:, 0] / v.sum(1)], dim=1)  # reference: w_a = 2σ_v²/(σ_a²+σ_v²)
    torch.testing.assert_close(w, ref)
    # three modalities, one absent: renormalized over the present two, the absent one weighs 0; none present: 0
    w3 = inverse_variance_weights(torch.tensor([[1.0, 4.0, 9.0]] * 2), torch.tensor([[T, F, T], [F, F, F]]))
    torch.testing.assert_close(w3, torch.tensor([[1.8, 0.0, 0.2], [0.0, 0.0, 0.0]]))


def test_dependence_division_and_renormalization_hand_case():
    w = dependence_weights(torch.tensor([[1.6, 0.4, 1.0]]), torch.tensor([2.0, 1.0, 5.0]), torch.tensor([[T, T, F]]))
    torch.testing.assert_close(w, torch.tensor([[4 / 3, 2 / 3, 0.0]]))  # (0.8, 0.4) renormalized to sum |S| = 2
    # equal dependences change nothing
    same = dependence_weights(torch.tensor([[1.6, 0.4]]), torch.tensor([3.0, 3.0]), torch.ones(1, 2, dtype=torch.bool))
    torch.testing.assert_close(same, torch.tensor([[1.6, 0.4]]))


def test_features_are_scaled_by_one_plus_w():
    z = torch.arange(6.0).view(2, 3)
    torch.testing.assert_close(scale_features(z, torch.tensor([0.5, 0.0])), torch.tensor([[0, 1.5, 3], [3, 4, 5.0]]))
    maps = torch.ones(2, 1, 2, 2)
    assert torch.equal(scale_features(maps, torch.tensor([1.0, 2.0]))[:, 0, 0, 0], torch.tensor([2.0, 3.0]))


def test_weight_functions_gradcheck():
    present = torch.tensor([[T, T, F], [T, T, T]])
    v = (torch.rand(2, 3, dtype=torch.float64) + 0.5).requires_grad_()
    d = (torch.rand(3, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: inverse_variance_weights(x, present), (v,))
    assert torch.autograd.gradcheck(lambda x, y: dependence_weights(x, y, present), (v, d))


def test_fusion_forward_is_the_inner_fusion_of_scaled_means_in_eval():
    torch.manual_seed(0)
    fusion = UDMLFusion([(3,), (2,)], {"name": "concat"}, level_scale=10.0, hidden=4).eval()
    fusion.dependence.copy_(torch.tensor([2.0, 1.0]))
    feats = [torch.randn(4, 3), torch.randn(4, 2)]
    present = torch.tensor([[T, T], [T, F], [F, T], [T, T]])
    parts = fusion.parts(feats, present)
    variance = (1 + 10.0 * parts.level).square()
    weights = dependence_weights(inverse_variance_weights(variance, present), fusion.dependence, present)
    torch.testing.assert_close(parts.weights, weights)
    assert torch.equal(parts.weights[1], torch.tensor([1.0, 0.0])) and torch.equal(
        parts.weights[2], torch.tensor([0, 1.0])
    )
    expected = torch.cat([scale_features(parts.mu[j], weights[:, j]) for j in range(2)], dim=1)
    torch.testing.assert_close(parts.fused, expected)
    assert torch.equal(parts.fused[1, 3:], torch.zeros(2)) and torch.equal(parts.fused[2, :3], torch.zeros(3))
    torch.testing.assert_close(fusion(feats, present), parts.fused)
    held = fusion.parts(feats, present, hold_weights=True)  # warm-up: w = 1 for every present modality
    assert torch.equal(held.weights, present.float())
    torch.testing.assert_close(held.fused, torch.cat([2 * parts.mu[0], 2 * parts.mu[1]], dim=1))


def test_dependence_buffer_update_with_momentum_and_validity():
    fusion = UDMLFusion([(2,), (2,)], {"name": "concat"}, hidden=4)
    fusion.update_dependence(torch.tensor([3.0, 5.0]), torch.tensor([T, F]), momentum=0.0)
    assert fusion.dependence.tolist() == [3.0, 1.0]  # the last batch; a modality without samples keeps its value
    fusion.update_dependence(torch.tensor([1.0, 5.0]), torch.tensor([T, T]), momentum=0.5)
    assert fusion.dependence.tolist() == [2.0, 3.0]


# ------------------------------------------------------------------------------------------------ losses
def test_level_loss_hand_case_and_gradcheck():
    pred = torch.tensor([[0.5, 0.2], [0.1, 0.9]], dtype=torch.float64, requires_grad=True)
    level = torch.tensor([[0.0, 0.2], [1.0, 0.5]], dtype=torch.float64)
    present = torch.tensor([[T, T], [T, F]])
    assert level_loss(pred, level, present).item() == pytest.approx((0.25 + 0.0 + 0.81) / 2)
    assert torch.autograd.gradcheck(lambda p: level_loss(p, level, present), (pred,))


def test_prior_kl_equals_dmrnet_kl_for_the_standard_prior_and_hand_cases():
    mu, logvar = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    torch.testing.assert_close(prior_kl(mu, logvar).mean(), gaussian_kl(mu, logvar))
    assert prior_kl(torch.zeros(1, 5), torch.full((1, 5), 4.0).log(), torch.tensor([4.0])).abs().item() < 1e-6
    assert prior_kl(torch.full((1, 1), 2.0), torch.zeros(1, 1)).item() == pytest.approx(2.0)  # ½(1 + 4 − 0 − 1)
    # prior v: ½(σ²/v + μ²/v − log(σ²/v) − 1) with σ² = 1, μ = 1, v = 2
    assert prior_kl(torch.ones(1, 1), torch.zeros(1, 1), torch.tensor([2.0])).item() == pytest.approx(
        0.5 * (0.5 + 0.5 - torch.tensor(0.5).log().item() - 1)
    )
    m = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    lv = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    v = torch.tensor([1.5, 3.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(prior_kl, (m, lv, v))


def test_embedding_kl_counts_present_samples_over_the_batch_size():
    mus = [torch.full((2, 1), 2.0), torch.full((2, 1), 2.0)]
    logvars = [torch.zeros(2, 1), torch.zeros(2, 1)]
    present = torch.tensor([[T, T], [T, F]])
    assert embedding_kl(mus, logvars, present).item() == pytest.approx(3 * 2.0 / 2)  # 3 present cells, KL 2 each


# ------------------------------------------------------------------------------------------------ noise
def test_noise_levels_are_seeded_per_sample_and_clean_samples_are_untouched():
    method, _, ds = build(clean_prob=0.5, kinds=["gaussian"])  # gaussian changes every element
    batch = batch_of(ds, 64)
    present = batch.present.clone()
    present[:5, 0] = False
    batch = batch.with_mask(present)
    state = TrainState(seed=3, epoch=1)
    noisy, levels = method.inject(batch, state)
    assert levels.shape == (64, 3) and (levels >= 0).all() and (levels <= 1).all()
    assert torch.equal(levels[:5, 0], torch.zeros(5))  # absent: level 0
    clean = levels == 0
    assert 0.3 < clean[present].float().mean().item() < 0.7  # about clean_prob
    for j, m in enumerate(ds.modalities):
        same = (noisy.inputs[m] == batch.inputs[m]).all(dim=1)
        assert torch.equal(same[clean[:, j]], torch.ones(int(clean[:, j].sum()), dtype=torch.bool))
        assert not same[~clean[:, j]].any()
    again, levels2 = method.inject(batch_of(ds, 32, start=32).with_mask(present[32:]), state)  # another batch
    assert torch.equal(levels2, levels[32:]) and all(
        torch.equal(again.inputs[m], noisy.inputs[m][32:]) for m in ds.modalities
    )
    assert not torch.equal(method.inject(batch, TrainState(seed=3, epoch=2))[1], levels)
    assert torch.equal(method.inject(batch, TrainState(seed=3, epoch=1))[1], levels)
    late, zero = build(noise_start_epoch=2)[0].inject(batch, state)
    assert torch.equal(zero, torch.zeros(64, 3)) and late is batch


def test_draw_levels_clean_prob_extremes():
    idx, present = torch.arange(50), torch.ones(50, 2, dtype=torch.bool)
    assert (draw_levels(idx, present, 0, 0, 1.0, 2)[0] == 0).all()
    levels, kinds, _ = draw_levels(idx, present, 0, 0, 0.0, 2)
    assert (levels > 0).all() and set(kinds.flatten().tolist()) == {0, 1}


# ------------------------------------------------------------------------------------------------ method
def test_total_loss_composition_and_terms():
    torch.manual_seed(0)
    method, model, ds = build(gamma=2.5, beta=1e-2, lam=0.3)
    step = method(model, batch_of(ds, 16), TrainState(seed=0, epoch=7))
    t = step.terms
    expected = t["ce_fused"] + 2.5 * (t["ce_a"] + t["ce_b"] + t["ce_c"]) + 1e-2 * t["kl"] + 0.3 * t["level_mse"]
    torch.testing.assert_close(step.loss.detach(), expected)
    torch.manual_seed(0)
    method0, model0, _ = build(gamma=0.0, beta=0.0, lam=0.0)
    step0 = method0(model0, batch_of(ds, 16), TrainState(seed=0, epoch=7))
    torch.testing.assert_close(step0.loss.detach(), step0.terms["ce_fused"])
    torch.testing.assert_close(
        step0.terms["ce_fused"], torch.nn.functional.cross_entropy(step0.output, batch_of(ds, 16).target)
    )


def test_warmup_holds_the_weights_then_they_follow_the_estimates():
    torch.manual_seed(0)
    method, model, ds = build(warmup_epochs=3)
    assert method.full_loss_epoch() == 3
    for epoch in (0, 2):
        terms = method(model, batch_of(ds, 16), TrainState(seed=0, epoch=epoch)).terms
        assert all(terms[f"w_{m}"].item() == 1.0 for m in ds.modalities)
    terms = method(model, batch_of(ds, 16), TrainState(seed=0, epoch=3)).terms
    ws = torch.stack([terms[f"w_{m}"] for m in ds.modalities])
    assert not torch.allclose(ws, torch.ones(3))


def test_dependence_is_the_mean_abs_unimodal_logit_of_the_step():
    torch.manual_seed(0)
    method, model, ds = build()
    model.eval()  # μ instead of samples: the unimodal logits can be replayed
    batch = batch_of(ds, 16)
    state = TrainState(seed=1, epoch=0)
    method(model, batch, state)
    noisy, _ = method.inject(batch, state)
    logits = unimodal_logits(model, model.encode(noisy), noisy.present)
    expected = torch.stack([p.abs().sum(1).mean() for p in logits.values()])
    torch.testing.assert_close(model.fusion.dependence, expected)


@pytest.mark.parametrize("image", [False, True], ids=["vectors", "images"])
def test_one_training_step_with_missing_modalities_reaches_every_trainable_part(image):
    torch.manual_seed(0)
    ds = tiny_dataset(image_size=16 if image else 0, missing_rate=0.3)
    method, model, _ = build(SURF_TINY if image else MLP, ds, distribution={"name": "uniform"}, warmup_epochs=0)
    batch = batch_of(ds, 16)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    step = method(model, batch, TrainState(seed=0, epoch=1))
    assert torch.isfinite(step.loss) and step.output is not None and step.output.shape == (16, 3)
    step.loss.backward()
    fusion = model.fusion
    for name, part in [
        ("encoders", model.encoders),
        ("embeddings", fusion.embeddings),
        ("estimators", fusion.estimators),
    ]:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), name
    opt.step()
    model.eval()
    with torch.no_grad():
        out = model(batch)
    assert torch.isfinite(out).all()


def test_config_errors_and_architecture_and_task_rules():
    method, _, _ = build()
    assert method.supported_tasks == ("classification",) and "classification" in method.task_reason
    once = method.model_config(MLP)
    assert once["fusion"]["name"] == "udml" and once["fusion"]["fusion"] == MLP["fusion"]
    assert method.model_config(once) == once  # idempotent
    with pytest.raises(ConfigError, match="architecture"):
        method.model_config({"architecture": "esanet"})
    with pytest.raises(ConfigError, match="udml fusion"):
        method.prepare(tiny_model(tiny_dataset()))
    for bad, key in [
        ({"kinds": ["nope"]}, "method.kinds"),
        ({"clean_prob": 2.0}, "clean_prob"),
        ({"kl_prior": "x"}, "kl_prior"),
    ]:
        with pytest.raises(ConfigError, match=key):
            METHODS.build("udml", bad, context=method_context())


# ------------------------------------------------------------------------------------------------ CLI
@pytest.fixture
def drop_hydra_log_handlers() -> Iterator[None]:
    before = list(logging.root.handlers)
    yield
    for handler in [h for h in logging.root.handlers if h not in before]:
        logging.root.removeHandler(handler)


@pytest.mark.slow
def test_cli_trains_udml_on_uci_mfeat(tmp_path, capsys, drop_hydra_log_handlers):
    run = tmp_path / "run"
    argv = [
        "train", "method=udml", "dataset=uci_mfeat", "trainer.max_epochs=1", "dataset.views=[fou,kar]",
        "dataset.fractions=[0.3,0.1,0.6]", "model.encoder.hidden=[16]", "model.encoder.out_features=8",
        "model.fusion.out_features=12", "method.hidden=8", "trainer.batch_size=64", "trainer.progress=false",
        "trainer.tensorboard=false", f"hydra.run.dir={run}",
    ]  # fmt: skip
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    results = json.loads((run / "results.json").read_text())
    assert list(results["metrics"]["test"]) == ["fou", "kar", "fou+kar"]
    assert results["config"]["model"]["fusion"]["name"] == "udml"


def test_a_vector_modality_present_in_one_row_trains_and_stays_zero_elsewhere():
    torch.manual_seed(0)
    fusion = UDMLFusion([(3,), (2,)], {"name": "concat"}, hidden=4).train()
    present = torch.tensor([[T, T], [T, F], [T, F]])
    parts = fusion.parts([torch.randn(3, 3), torch.randn(3, 2)], present)
    assert torch.isfinite(parts.fused).all() and torch.equal(parts.fused[1:, 3:], torch.zeros(2, 2))
