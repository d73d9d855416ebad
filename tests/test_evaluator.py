import pytest
import torch

from mmrobust.evaluation.evaluator import predict_subsets
from mmrobust.evaluation.metrics import classification_metrics, fit_threshold, pad_metrics
from mmrobust.subsets import all_subsets
from tests.conftest import SURF_TINY, batch_of, tiny_dataset, tiny_model


@pytest.mark.parametrize("config", [None, SURF_TINY], ids=["mlp", "surf"])
def test_encode_once_equals_forward_on_each_restricted_batch(config):
    ds = tiny_dataset(image_size=16 if config else 0, missing_rate=0.3)
    model = tiny_model(ds, config)
    batches = [batch_of(ds, 8, 0), batch_of(ds, 8, 8)]
    fast = predict_subsets(model, batches, all_subsets(3), encode_once=True)
    model.eval()
    for s in all_subsets(3):
        expected = torch.cat([model(b.restrict(s)) for b in batches])
        torch.testing.assert_close(fast[s].logits, expected, rtol=1e-5, atol=1e-6)
    slow = predict_subsets(model, batches, all_subsets(3), encode_once=False)
    assert all(torch.allclose(fast[s].logits, slow[s].logits, atol=1e-6) for s in all_subsets(3))


def test_predictions_drop_padding_duplicates_and_sort_by_index():
    ds = tiny_dataset()
    model = tiny_model(ds)
    b1, b2 = batch_of(ds, 4, 4), batch_of(ds, 4, 0)
    dup = batch_of(ds, 2, 0)  # a padding sampler repeats samples
    preds = predict_subsets(model, [b1, b2, dup], [0b111])
    assert preds[0b111].index.tolist() == list(range(8))
    assert preds[0b111].target.tolist() == [ds[i].target for i in range(8)]


def test_accuracy_and_macro_f1_hand_computed():
    logits = torch.eye(3)[[0, 1, 1, 2]]  # predictions 0, 1, 1, 2
    target = torch.tensor([0, 1, 2, 2])
    m = classification_metrics(logits, target, 3)
    assert m["accuracy"] == pytest.approx(0.75)
    # per-class F1: class0 1.0, class1 2/3 (P=.5,R=1), class2 2/3 (P=1,R=.5)
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_pad_metrics_iso_naming():
    # bona fide = class 1. 4 attacks (one accepted), 2 bona fide (one rejected)
    target = torch.tensor([0, 0, 0, 0, 1, 1])
    accepted = torch.tensor([0, 0, 0, 1, 1, 0])
    logits = torch.stack([1 - accepted.float(), accepted.float()], dim=1)
    m = pad_metrics(logits, target, bona_fide_class=1)
    assert m["apcer"] == pytest.approx(1 / 4)  # attacks accepted
    assert m["bpcer"] == pytest.approx(1 / 2)  # bona fide rejected
    assert m["acer"] == pytest.approx(3 / 8)
    swapped = pad_metrics(logits.flip(1), 1 - target, bona_fide_class=0)  # CeFA encoding: real = 0
    assert swapped == m
    with pytest.raises(ValueError, match="2 classes"):
        pad_metrics(torch.zeros(3, 3), torch.zeros(3, dtype=torch.long), 1)


def test_threshold_fixed_on_validation_separates_scores():
    # bona fide scores 0.6, 0.7; attacks 0.55, 0.1: argmax accepts an attack, the fitted threshold does not
    p = torch.tensor([0.6, 0.7, 0.55, 0.1])
    logits = torch.stack([torch.log(1 - p), torch.log(p)], dim=1)
    target = torch.tensor([1, 1, 0, 0])
    assert pad_metrics(logits, target, 1)["acer"] == pytest.approx(0.25)
    t = fit_threshold(logits, target, 1)
    assert 0.55 < t <= 0.6 + 1e-6
    assert pad_metrics(logits, target, 1, t)["acer"] == 0.0


def test_a_subset_absent_from_a_whole_batch_gives_logits_on_both_paths():
    ds = tiny_dataset()
    model = tiny_model(ds)
    batch = batch_of(ds, 6).restrict(0b110)  # modality a is missing for every sample
    fast = predict_subsets(model, [batch], [0b001, 0b011], encode_once=True)
    slow = predict_subsets(model, [batch], [0b001, 0b011], encode_once=False)
    for s in (0b001, 0b011):
        torch.testing.assert_close(fast[s].logits, slow[s].logits)
    # with nothing present the model sees all-zero features: every sample gets the same logits
    assert torch.allclose(fast[0b001].logits, fast[0b001].logits[:1].expand(6, -1))
