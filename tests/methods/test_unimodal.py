"""Unimodal predictions through the shared head and the fused + unimodal cross-entropy (ARL, DGL)."""

import pytest
import torch
import torch.nn.functional as F

from mmrobust.losses.imbalance import FusedUnimodalLoss, fused_unimodal_loss
from mmrobust.methods import METHODS, TrainState
from mmrobust.methods.unimodal import present_columns, unimodal_logits
from tests.conftest import MLP, SURF_TINY, batch_of, method_context, tiny_dataset, tiny_model

SUM = {"encoder": {"name": "mlp", "hidden": [16], "out_features": 8}, "fusion": {"name": "sum"}}
BATCHNORM = {
    "encoder": {"name": "mlp", "hidden": [16], "out_features": 8},
    "fusion": {"name": "concat_mlp", "hidden": [10], "out_features": 12, "norm": "batch"},
}


@pytest.mark.parametrize("config", [MLP, SUM, {"encoder": MLP["encoder"], "fusion": {"name": "concat"}}])
@pytest.mark.parametrize("shared", ["trained", "detached"])
def test_unimodal_logits_equal_the_model_on_the_batch_restricted_to_one_modality(config, shared):
    ds = tiny_dataset(missing_rate=0.3)
    model = tiny_model(ds, config)
    batch = batch_of(ds, 16)
    logits = unimodal_logits(model, model.encode(batch), batch.present, shared=shared)
    assert list(logits) == ["a", "b", "c"]
    for j, m in enumerate(model.modalities):
        torch.testing.assert_close(logits[m], model(batch.restrict(1 << j)), rtol=0, atol=1e-6)


def test_a_modality_absent_from_the_whole_batch_has_no_unimodal_logits():
    ds = tiny_dataset()
    model = tiny_model(ds)
    batch = batch_of(ds, 8).restrict(0b101)
    logits = unimodal_logits(model, model.encode(batch), batch.present)
    assert list(logits) == ["a", "c"]
    assert torch.equal(present_columns(model, logits, batch.present), batch.present[:, [0, 2]])


def test_detached_shared_stages_pass_gradients_to_the_encoders_only():
    ds = tiny_dataset()
    for shared, reaches_head in (("detached", False), ("trained", True)):
        model = tiny_model(ds)
        batch = batch_of(ds, 8)
        sum(
            v.square().sum() for v in unimodal_logits(model, model.encode(batch), batch.present, shared).values()
        ).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoders.parameters())
        head = [*model.fusion.parameters(), *model.head_module.parameters()]
        assert all((p.grad is not None) == reaches_head for p in head), shared


def test_unimodal_passes_leave_batchnorm_running_statistics_alone():
    ds = tiny_dataset()
    model = tiny_model(ds, BATCHNORM)
    batch = batch_of(ds, 16)
    before = {k: v.clone() for k, v in model.fusion.state_dict().items()}
    features = model.encode(batch)
    unimodal_logits(model, features, batch.present)
    for k, v in model.fusion.state_dict().items():
        assert torch.equal(v, before[k]), k
    model.fuse(features, batch.present)  # the fused training forward does update them
    assert not torch.equal(model.fusion.state_dict()["net.1.running_mean"], before["net.1.running_mean"])


SURF_MAP = {**SURF_TINY, "fusion": {**SURF_TINY["fusion"], "pool": False}}
FUSIONS = {"concat_mlp": MLP, "sum": SUM, "concat_trunk": SURF_TINY, "concat_trunk_map": SURF_MAP}


@pytest.mark.parametrize("fusion", list(FUSIONS))
@pytest.mark.parametrize("modalities", [["a", "b"], ["a", "b", "c"]])
def test_imbalance_methods_run_with_every_fusion_and_number_of_modalities(fusion, modalities):
    image = fusion.startswith("concat_trunk")
    overrides = {"modalities": modalities, "snr": [1.0] * len(modalities)}
    ds = tiny_dataset(image_size=16 if image else 0, **overrides)
    batch = batch_of(ds, 4)
    for name in ("arl", "dgl", "ogm_ge"):
        model = tiny_model(ds, FUSIONS[fusion])
        method = METHODS.build(name, {}, context=method_context(dataset_overrides=overrides))
        state = TrainState(epoch=5)
        step = method(model, batch, state)
        step.loss.backward()
        method.after_backward(model, state)
        assert torch.isfinite(step.loss) and step.output.shape == (4, 3), name
        assert all(torch.isfinite(p.grad).all() for p in model.encoders.parameters()), name


def test_a_model_that_fuses_inside_its_encoders_is_refused():
    ds = tiny_dataset()
    model = tiny_model(ds)
    model.fusion_inside_encoders = True
    batch = batch_of(ds, 4)
    with pytest.raises(ValueError, match="fuses after its encoders"):
        unimodal_logits(model, model.encode(batch), batch.present)


# ------------------------------------------------------------------------------ fused + unimodal loss
def test_fused_unimodal_loss_hand_computed():
    fused = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    unimodal = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[3.0, 3.0], [0.0, 2.0]]])  # [V=2, B=2, C=2]
    target = torch.tensor([0, 1])
    present = torch.tensor([[True, True], [True, False]])  # modality 1 absent for sample 1
    log2 = torch.log(torch.tensor(2.0))
    ce_fused = (torch.log1p(torch.exp(torch.tensor(-2.0))) + log2) / 2
    ce_0 = (torch.log1p(torch.exp(torch.tensor(1.0))) + torch.log1p(torch.exp(torch.tensor(1.0)))) / 2
    ce_1 = log2 / 2  # sample 1 does not count, the denominator stays B = 2
    loss, fused_term, terms = fused_unimodal_loss(fused, unimodal, target, present, weight=3.0)
    torch.testing.assert_close(fused_term, ce_fused)
    torch.testing.assert_close(terms, torch.stack([ce_0, ce_1]))
    torch.testing.assert_close(loss, ce_fused + 3.0 * (ce_0 + ce_1))


def test_fused_unimodal_loss_with_complete_data_is_ce_plus_weighted_plain_ces():
    torch.manual_seed(0)
    fused, unimodal, target = torch.randn(5, 4), torch.randn(3, 5, 4), torch.randint(0, 4, (5,))
    present = torch.ones(5, 3, dtype=torch.bool)
    loss, _, _ = FusedUnimodalLoss(2.5)(fused, unimodal, target, present)
    expected = F.cross_entropy(fused, target) + 2.5 * sum(F.cross_entropy(u, target) for u in unimodal)
    torch.testing.assert_close(loss, expected)
    zero, _, _ = fused_unimodal_loss(fused, unimodal, target, present, weight=0.0)
    torch.testing.assert_close(zero, F.cross_entropy(fused, target))


def test_fused_unimodal_loss_gradcheck():
    torch.manual_seed(1)
    fused = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    unimodal = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 2, 1, 1])
    present = torch.tensor([[True, False], [True, True], [False, True], [True, True]])
    assert torch.autograd.gradcheck(lambda f, u: fused_unimodal_loss(f, u, target, present, 1.5)[0], (fused, unimodal))


def test_fused_unimodal_loss_shape_errors():
    fused, target = torch.randn(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="unimodal logits"):
        fused_unimodal_loss(fused, torch.randn(2, 4, 5), target, torch.ones(4, 2, dtype=torch.bool), 1.0)
    with pytest.raises(ValueError, match="present must be"):
        fused_unimodal_loss(fused, torch.randn(2, 4, 3), target, torch.ones(4, 3, dtype=torch.bool), 1.0)
