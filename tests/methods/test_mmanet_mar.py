"""MMANet's modality-aware regularization: the masked loss, the mining signals and the miner."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from mmrobust.evaluation.evaluator import Predictions, predict_subsets
from mmrobust.losses.masked import masked_cross_entropy
from mmrobust.methods import EpochContext, TrainState
from mmrobust.methods.mar_mining import WeakCombinationMiner, leave_one_out, prediction_shift, weak_subsets
from mmrobust.methods.mmanet import MMANet
from tests.conftest import batch_of, method_context, tiny_dataset, tiny_model


def test_masked_cross_entropy_is_the_masked_mean_not_the_reference_broadcast_sum():
    torch.manual_seed(0)
    logits, target = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    mask = torch.tensor([True, False, True, False])
    ce = F.cross_entropy(logits, target, reduction="none")  # [4]
    loss = masked_cross_entropy(logits, target, mask)
    torch.testing.assert_close(loss, (ce[0] + ce[2]) / 4)  # (1/B) Σ_b mask_b CE_b
    # the reference code: a [B] loss times a [B, 1, 1, 1] mask broadcasts to [B, 1, 1, B] and sums everything
    reference = (ce * mask.float().view(4, 1, 1, 1)).sum() / 4
    torch.testing.assert_close(reference, ce.sum() * mask.sum() / 4)
    assert not torch.isclose(loss, reference)
    torch.testing.assert_close(masked_cross_entropy(logits, target, torch.ones(4, dtype=torch.bool)), ce.mean())
    assert masked_cross_entropy(logits, target, torch.zeros(4, dtype=torch.bool)).item() == 0.0


def test_masked_cross_entropy_dense_targets_and_errors():
    torch.manual_seed(1)
    logits, target = torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5))
    mask = torch.tensor([0.0, 1.0])
    expected = F.cross_entropy(logits[1:], target[1:]) / 2  # per-sample mean over pixels, then (1/B) Σ
    torch.testing.assert_close(masked_cross_entropy(logits, target, mask), expected)
    with pytest.raises(ValueError, match=r"logits \[B, C, \*\] and target \[B, \*\]"):
        masked_cross_entropy(torch.randn(4, 3), torch.zeros(3, dtype=torch.long), torch.ones(4))
    with pytest.raises(ValueError, match=r"mask must be \[B\] = \[4\]"):
        masked_cross_entropy(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), torch.ones(4, 1))


def test_prediction_shift_signals_by_hand():
    full = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    dropped = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    target = torch.tensor([1, 0])
    kl = (0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)) / 2  # mean per-sample KL(p_M ‖ p_{M∖m})
    assert prediction_shift(full, dropped, target, "kl") == pytest.approx(kl)
    # argmax labels: full [0, 0], dropped [0, 0] (ties go to class 0): same histogram, same accuracy
    assert prediction_shift(full, dropped, target, "label_hist") == pytest.approx(0.0)
    assert prediction_shift(full, dropped, target, "accuracy") == pytest.approx(0.0)
    flipped = torch.log(torch.tensor([[0.4, 0.6], [0.2, 0.8]]))  # labels [1, 1]
    h_full, h_drop = torch.tensor([3.0, 1.0]) / 4, torch.tensor([1.0, 3.0]) / 4  # add-one smoothed counts
    assert prediction_shift(full, flipped, target, "label_hist") == pytest.approx(
        float((h_full * (h_full / h_drop).log()).sum())
    )
    assert prediction_shift(full, flipped, target, "accuracy") == pytest.approx(0.5 - 0.5)
    assert prediction_shift(flipped, full, target, "accuracy") == pytest.approx(0.5 - 0.5)
    assert prediction_shift(full, full.flip(1), torch.tensor([0, 0]), "accuracy") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="valid signals: kl, label_hist, accuracy"):
        prediction_shift(full, dropped, target, "mse")
    with pytest.raises(ValueError, match=r"logits \[N, C\]"):
        prediction_shift(full, dropped[:1], target, "kl")


def test_candidates_and_weak_sets():
    assert leave_one_out(3) == [0b110, 0b101, 0b011]
    assert weak_subsets(0, 3) == [0b010, 0b100, 0b110]  # strong 'a' -> b, c, b+c
    assert weak_subsets(1, 2) == [0b01]
    assert len(weak_subsets(2, 6)) == 31  # 2^5 − 1 subsets of the other five views


def one_modality_model(ds, keep: str):
    """A model whose predictions depend only on modality ``keep``: the other encoders output zeros."""
    model = tiny_model(ds)
    with torch.no_grad():
        for m, enc in model.encoders.items():
            if m != keep:
                for p in enc.parameters():
                    p.zero_()
    return model.eval()


class Recorder:
    def __init__(self):
        self.logged = []

    def __call__(self, metrics, step):
        self.logged.append(metrics)


@pytest.mark.parametrize("keep", ["a", "b", "c"])
def test_mining_picks_the_modality_the_predictions_depend_on(keep, tmp_path):
    ds = tiny_dataset("val")
    model = one_modality_model(ds, keep)
    method = MMANet(method_context(run_dir=tmp_path), alpha=0.0, begin_epoch=3, mining_start=1)
    log = Recorder()
    ctx = EpochContext(validate=lambda s: predict_subsets(model, [batch_of(ds, 32)], s), log=log, run_dir=tmp_path)
    for epoch in range(4):
        method.on_epoch_end(model, TrainState(epoch=epoch, step=epoch), ctx)
    assert method.miner.modalities[int(method.miner.strong)] == keep
    evidence = json.loads((tmp_path / "mar_mining.json").read_text())
    assert evidence["strong"] == keep and evidence["mining_epochs"] == [1, 2] and evidence["source"] == "mined"
    rest = [m for m in "abc" if m != keep]
    assert evidence["weak"] == [*rest, "+".join(rest)]
    by_dropped = {c["dropped"]: c for c in evidence["candidates"]}
    assert by_dropped[keep]["accumulated"] > 0 and len(by_dropped[keep]["shift_per_epoch"]) == 2
    assert all(by_dropped[m]["accumulated"] == pytest.approx(0.0, abs=1e-9) for m in rest)
    assert len(log.logged) == 3 and log.logged[-1] == {"mar/strong": float("abc".index(keep))}
    assert set(log.logged[0]) == {"mar/shift_a", "mar/shift_b", "mar/shift_c"}


def test_mining_with_two_modalities(tmp_path):
    ds = tiny_dataset("val", modalities=["x", "y"], snr=[1.0, 1.0])
    model = one_modality_model(ds, "y")
    method = MMANet(method_context({"modalities": ["x", "y"], "snr": [1.0, 1.0]}, run_dir=tmp_path), alpha=0.0)
    ctx = EpochContext(validate=lambda s: predict_subsets(model, [batch_of(ds, 32)], s), log=Recorder())
    for epoch in range(5):
        method.on_epoch_end(model, TrainState(epoch=epoch), ctx)
    assert method.miner.evidence()["strong"] == "y" and method.miner.evidence()["weak"] == ["x"]


def fake_predictions(num_modalities, shifted: int, epoch: int):
    """Validation predictions where dropping modality ``shifted`` moves the logits by ``epoch + 1``."""
    base = torch.zeros(5, 2)
    preds = {}
    for s in range(1, 1 << num_modalities):
        moved = s == (((1 << num_modalities) - 1) & ~(1 << shifted))
        logits = base + torch.tensor([float(epoch + 1), 0.0]) if moved else base
        preds[s] = Predictions(logits, torch.zeros(5, dtype=torch.long), torch.arange(5))
    return preds


def test_shift_is_accumulated_over_the_mining_epochs():
    miner = WeakCombinationMiner(("x", "y", "z"), range(0, 2))
    miner.observe(0, fake_predictions(3, shifted=2, epoch=0))
    miner.observe(1, fake_predictions(3, shifted=1, epoch=1))  # a bigger shift for y in the later epoch
    assert miner.decide() == 1
    assert torch.isclose(miner.accumulated()[2], miner.shift[0, 2]) and miner.accumulated()[0] == 0
    weak = miner.is_weak(torch.tensor([[True, False, False], [True, False, True], [False, True, True]]))
    assert weak.tolist() == [True, True, False]
    with pytest.raises(RuntimeError, match="observed no epoch"):
        WeakCombinationMiner(("x", "y"), range(0, 2)).decide()


def test_resume_keeps_the_mined_weak_set(tmp_path):
    context = method_context(run_dir=tmp_path)
    ds = tiny_dataset()
    model = tiny_model(ds)
    method = MMANet(context, alpha=0.0, begin_epoch=2, mining_start=0)
    method.prepare(model)
    for epoch in range(2):
        ctx = EpochContext(validate=lambda s, e=epoch: fake_predictions(3, 1, e), log=Recorder(), run_dir=tmp_path)
        method.on_epoch_end(None, TrainState(epoch=epoch), ctx)
    state = method.state_dict()
    assert {"miner.shift", "miner.strong", "miner.weak_table"} <= set(state)
    resumed = MMANet(context, alpha=0.0, begin_epoch=2, mining_start=0)
    resumed.prepare(model)  # as the trainer: prepare, then load the checkpoint
    assert not resumed.miner.decided
    resumed.load_state_dict(state)
    assert resumed.miner.evidence() == method.miner.evidence()
    assert resumed.miner.evidence()["weak"] == ["a", "c", "a+c"]
    # the resumed method regularizes the weak samples
    step = resumed(model, batch_of(ds, 32), TrainState(epoch=5, seed=0))
    assert step.terms["mar"] > 0
