import pytest
import torch

from mmrobust.evaluation.evaluator import evaluate_subsets, predict_subsets
from mmrobust.subsets import all_subsets
from mmrobust.tasks import Classification
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


def test_streaming_metrics_equal_metrics_of_the_kept_logits_and_do_not_depend_on_batching():
    ds = tiny_dataset(missing_rate=0.3)
    model = tiny_model(ds)
    task = Classification(ds.num_classes)
    batches = [batch_of(ds, 8, start=i) for i in range(0, 24, 8)]
    whole = [batch_of(ds, 24)]
    streamed = evaluate_subsets(model, batches, all_subsets(3), task)
    at_once = evaluate_subsets(model, whole, all_subsets(3), task)
    kept = predict_subsets(model, batches, all_subsets(3))
    for s in all_subsets(3):
        accuracy = float((kept[s].logits.argmax(1) == kept[s].target).float().mean())
        assert streamed[s].scores()["accuracy"] == pytest.approx(accuracy)
        assert streamed[s].scores() == at_once[s].scores()
