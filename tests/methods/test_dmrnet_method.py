"""The dmrnet method: losses, the reduction to modality dropout, hard-combination mining and its log."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmrobust.losses.gaussian_kl import gaussian_kl
from mmrobust.methods import METHODS, EpochContext, TrainState
from mmrobust.methods.dmrnet import SIGMA2_FILE, DMRNet, hard_subsets
from mmrobust.methods.modality_dropout import ModalityDropout
from mmrobust.models.necks import ProbabilisticNeck
from mmrobust.registry import ConfigError
from mmrobust.subsets import masks_to_subsets
from tests.conftest import MLP, batch_of, method_context, tiny_dataset, tiny_model

PROB = {**MLP, "neck": {"name": "probabilistic"}}


def setup(**config):
    ds = tiny_dataset()
    model = tiny_model(ds, PROB)
    method = METHODS.build("dmrnet", config, context=method_context())
    method.prepare(model)
    return ds, model, method


def epoch_ctx(run_dir=None):
    return EpochContext(validate=None, log=lambda metrics, step: None, run_dir=run_dir)


def test_with_sigma_to_zero_the_loss_is_the_modality_dropout_cross_entropy():
    ds, model, method = setup(alpha=0.0, beta=0.0)
    bn = model.neck_module.logvar[1]
    nn.init.zeros_(bn.weight), nn.init.constant_(bn.bias, -30.0)  # log σ² = −30 everywhere
    batch, state = batch_of(ds, 32), TrainState(seed=3, epoch=1)
    torch.manual_seed(0)
    step = method(model, batch, state)
    baseline = ModalityDropout(method_context())(model, batch, state)  # CE(head(neck(fused))), same draws
    torch.testing.assert_close(step.loss, baseline.loss, rtol=1e-5, atol=1e-6)
    with_kl = DMRNet(method_context())(model, batch, state)
    torch.testing.assert_close(with_kl.terms["ce"], baseline.loss, rtol=1e-5, atol=1e-6)
    assert with_kl.loss > with_kl.terms["ce"]  # α·L_DR > 0 even at σ → 0 (μ² and −log σ² terms)


def test_loss_is_ce_plus_alpha_kl_before_begin_epoch():
    ds, model, method = setup(alpha=0.1)
    torch.manual_seed(0)
    step = method(model, batch_of(ds, 16), TrainState(epoch=0))
    assert "hcr" not in step.terms
    torch.testing.assert_close(step.loss, step.terms["ce"] + 0.1 * step.terms["dr"])


def test_hcr_is_the_masked_mean_ce_of_an_independent_second_sample():
    ds, model, method = setup(beta=0.5, begin_epoch=2)
    batch, state = batch_of(ds, 32), TrainState(seed=1, epoch=2)
    method.hard[[0b001, 0b110]] = True  # H = {a, b+c}
    torch.manual_seed(7)
    step = method(model, batch, state)
    # replay the step by hand: same draws, same ε's
    dropped = method.dropout.drop(batch, state)
    torch.manual_seed(7)
    mu, logvar = model.neck_module.distribution(model.fuse(model.encode(dropped), dropped.present))
    eps_first, eps_second = torch.randn_like(mu), torch.randn_like(mu)
    ce_first = F.cross_entropy(model.head(mu + eps_first * (0.5 * logvar).exp()), dropped.target)
    ce_second = F.cross_entropy(model.head(mu + eps_second * (0.5 * logvar).exp()), dropped.target, reduction="none")
    subsets = masks_to_subsets(dropped.present).tolist()
    in_hard = torch.tensor([s in (0b001, 0b110) for s in subsets], dtype=torch.float32)
    assert 0 < in_hard.sum() < 32
    expected = (ce_second * in_hard).sum() / 32
    torch.testing.assert_close(step.terms["hcr"], expected.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(step.terms["ce"], ce_first.detach(), rtol=1e-5, atol=1e-6)
    by_hand = ce_first + 1e-3 * gaussian_kl(mu, logvar) + 0.5 * expected
    torch.testing.assert_close(step.loss, by_hand)
    params = [p for p in model.parameters() if p.requires_grad]
    for got, want in zip(torch.autograd.grad(step.loss, params), torch.autograd.grad(by_hand, params)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)  # the second sample is in the graph


def test_hard_subsets_ranks_by_mean_sigma2_skips_unseen_and_breaks_ties_in_paper_order():
    sums = torch.tensor([0.0, 2.0, 9.0, 3.0, 0.0, 4.0, 1.0, 2.0], dtype=torch.float64)
    counts = torch.tensor([0.0, 1.0, 3.0, 1.0, 0.0, 2.0, 1.0, 2.0], dtype=torch.float64)
    # means: a=2, b=3, a+b=3, c=unseen, a+c=2, b+c=1, a+b+c=1
    assert hard_subsets(sums, counts, 3) == [0b010, 0b011, 0b001]
    assert hard_subsets(sums, counts, 7) == [0b010, 0b011, 0b001, 0b101, 0b110, 0b111]


def test_accumulators_sum_sigma2_per_drawn_subset_and_mining_uses_the_first_epochs(tmp_path):
    ds, model, method = setup(begin_epoch=2, top_k=2)
    totals = torch.zeros(2, 8, dtype=torch.float64)
    for epoch in range(3):
        state = TrainState(seed=0, epoch=epoch)
        for start in (0, 16):
            batch = batch_of(ds, 16, start)
            method(model, batch, state)
            dropped = method.dropout.drop(batch, state)
            with torch.no_grad():  # the statistics of the step just taken (BN in train mode: same batch, same output)
                _, logvar = model.neck_module.distribution(model.fuse(model.encode(dropped), dropped.present))
            subsets = masks_to_subsets(dropped.present)
            expected = torch.zeros(2, 8, dtype=torch.float64)
            expected[0].index_add_(0, subsets, logvar.double().exp().mean(dim=1))
            expected[1].index_add_(0, subsets, torch.ones(16, dtype=torch.float64))
            if start == 0:
                epoch_expected = expected
            else:
                epoch_expected += expected
        torch.testing.assert_close(method.epoch_stats, epoch_expected)
        method.on_epoch_end(model, state, epoch_ctx(tmp_path))
        assert method.epoch_stats is None
        if epoch < 2:
            totals += epoch_expected
    # mined at the end of epoch begin_epoch − 1 = 1 from epochs 0 and 1 only, not re-ranked at epoch 2
    torch.testing.assert_close(method.sigma2_sum, totals[0])
    torch.testing.assert_close(method.sigma2_count, totals[1])
    mined = hard_subsets(totals[0], totals[1], 2)
    assert method.hard.nonzero().flatten().tolist() == sorted(mined)
    log = json.loads((tmp_path / SIGMA2_FILE).read_text())
    assert [e["epoch"] for e in log["epochs"]] == [0, 1, 2]
    assert log["epochs"][0]["hard"] == [] and len(log["hard"]) == 2
    assert sum(log["epochs"][2]["count"].values()) == 32
    a_mean = float(totals[0][1] / totals[1][1])
    assert log["mining_sigma2"]["a"] == pytest.approx(a_mean)


def test_rerank_uses_each_later_epoch_and_the_state_survives_a_resume(tmp_path):
    ds, model, method = setup(begin_epoch=1, top_k=1, rerank=True)
    for epoch in range(2):
        method(model, batch_of(ds, 32), TrainState(epoch=epoch))
        stats = method.epoch_stats.clone()
        method.on_epoch_end(model, TrainState(epoch=epoch), epoch_ctx(tmp_path))
        assert method.hard.nonzero().flatten().tolist() == hard_subsets(stats[0], stats[1], 1)
    resumed = METHODS.build("dmrnet", {"begin_epoch": 1, "top_k": 1, "rerank": True}, context=method_context())
    resumed.load_state_dict(method.state_dict())
    assert torch.equal(resumed.hard, method.hard) and torch.equal(resumed.sigma2_sum, method.sigma2_sum)
    resumed.on_epoch_end(model, TrainState(epoch=1), epoch_ctx(tmp_path))  # epoch 1 again: its record is replaced
    assert [e["epoch"] for e in json.loads((tmp_path / SIGMA2_FILE).read_text())["epochs"]] == [0, 1]


def test_model_config_declares_the_probabilistic_neck_and_prepare_changes_no_module():
    ds = tiny_dataset()
    method = DMRNet(method_context(), neck={"name": "probabilistic_pooled"})
    declared = method.model_config(MLP)  # identity neck (unset) -> method.neck
    assert declared == {**MLP, "neck": {"name": "probabilistic_pooled"}} and "neck" not in MLP  # MLP unchanged
    assert method.model_config(declared) == declared  # idempotent: eval applies it to the saved config again
    assert method.model_config({**MLP, "neck": {"name": "identity"}}) == declared
    assert method.model_config(PROB) == PROB  # a probabilistic neck of the model config is kept
    model = tiny_model(ds, declared)
    before = dict(model.named_modules())
    method.prepare(model)
    assert dict(model.named_modules()) == before  # prepare is training-only state: the architecture is declared
    assert type(model.neck_module).__name__ == "PooledProbabilisticNeck" and model(batch_of(ds, 4)).shape == (4, 3)
    plain = tiny_model(ds)
    for call in (lambda: method.prepare(plain), lambda: method(plain, batch_of(ds, 4), TrainState())):
        with pytest.raises(
            ConfigError, match=r"probabilistic neck, got IdentityNeck: build the model from method.model_config"
        ):
            call()
    with pytest.raises(ConfigError, match="needs a probabilistic neck .* got model.neck.name='linear'"):
        method.model_config({**MLP, "neck": {"name": "linear"}})
    assert isinstance(model.neck_module, ProbabilisticNeck)


def test_model_config_puts_the_neck_on_esanet_at_its_penultimate_layer():
    from mmrobust.models import build_model

    esanet = {"architecture": "esanet", "encoder": "resnet18", "width": 8, "channels_decoder": [8, 8, 8]}
    declared = DMRNet(method_context()).model_config(esanet)
    assert declared["neck"] == {"name": "probabilistic"}
    torch.manual_seed(0)
    model = build_model(declared, ("rgb", "depth"), {"rgb": (3, 32, 32), "depth": (1, 32, 32)}, 4)
    assert isinstance(model.neck_module, ProbabilisticNeck) and model.neck_module.out_features == 8


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"begin_epoch": 0}, "begin_epoch"),
        ({"top_k": 8}, r"top_k: must be in \[1, 7\]"),
        ({"alpha": -1.0}, "alpha"),
        ({"neck": {"name": "identity"}}, "not a probabilistic neck"),
        ({"neck": {"name": "nope"}}, "valid neck names"),
    ],
)
def test_config_errors_name_the_key(config, message):
    with pytest.raises(ConfigError, match=message):
        METHODS.build("dmrnet", config, context=method_context())
