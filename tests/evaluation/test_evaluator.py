from pathlib import Path

import pytest
import torch
import yaml

import mmrobust
from mmrobust.evaluation.evaluator import evaluate_subsets, predict_subsets, subset_outputs
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


# ---- every subset in one batched fuse + neck + head call (late-fusion models) ----

VEC = {"name": "mlp", "hidden": [8], "out_features": 6}
MAPS = {"name": "resnet", "stem": "surf", "width": 4, "last_stage": "layer2", "se_out": True, "pool": False}
BATCH_NORM_MLP = {"name": "concat_mlp", "hidden": [8], "out_features": 6, "norm": "batch", "dropout": 0.5}
UDML = {"name": "udml", "fusion": {"name": "concat_mlp", "out_features": 6}, "hidden": 4}
TRUNK = {"name": "concat_trunk", "width": 4, "pool": False}
# case -> (model config, image size (0: vectors), modalities): one per registered fusion, plus the shipped models
BATCHED_CASES = {
    "concat": ({"encoder": VEC, "fusion": {"name": "concat"}}, 0, 3),
    "concat_mlp": ({"encoder": VEC, "fusion": BATCH_NORM_MLP}, 0, 3),
    "sum": ({"encoder": VEC, "fusion": {"name": "sum"}}, 0, 3),
    "mean": ({"encoder": VEC, "fusion": {"name": "mean"}, "neck": {"name": "probabilistic"}}, 0, 3),
    "mean_maps": ({"encoder": MAPS, "fusion": {"name": "mean"}}, 16, 3),
    "film": ({"encoder": VEC, "fusion": {"name": "film"}}, 0, 2),
    "gated": ({"encoder": VEC, "fusion": {"name": "gated", "hidden": 5}}, 0, 2),
    "udml": ({"encoder": VEC, "fusion": UDML}, 0, 3),
    "concat_trunk": ({"encoder": MAPS, "fusion": TRUNK, "neck": {"name": "probabilistic_pooled"}}, 16, 3),
    "mlp_shipped": ("mlp", 0, 3),
    "surf_baseline_shipped": ("surf_baseline", 16, 3),
}


def _batched_case(name):
    config, image_size, num_modalities = BATCHED_CASES[name]
    if isinstance(config, str):  # a shipped model config, narrowed
        config = yaml.safe_load((Path(mmrobust.__file__).parent / "configs" / "model" / f"{config}.yaml").read_text())
        for key in ("encoder", "fusion"):
            if "width" in config[key]:
                config[key]["width"] = 4
        if "hidden" in config["encoder"]:
            config["encoder"]["hidden"], config["encoder"]["out_features"] = [8], 6
            config["fusion"]["out_features"] = 6
    ds = tiny_dataset(image_size=image_size, missing_rate=0.3, modalities=["a", "b", "c"][:num_modalities],
                      snr=[2.0, 1.0, 0.5][:num_modalities])  # fmt: skip
    return ds, tiny_model(ds, config)


def _count_fuse_calls(model):
    """Record the rows of every ``fuse`` and ``fuse_subsets`` call (S·B for S subsets of B samples; instance
    attributes shadowing the methods); the ``fuse`` that ``fuse_subsets`` may make inside is not counted again."""
    calls: list[int] = []
    fuse, fuse_subsets = model.fuse, model.fuse_subsets
    inside = []

    def counted(features, present):
        if not inside:
            calls.append(len(present))
        return fuse(features, present)

    def counted_subsets(features, present, subset_masks):
        calls.append(len(subset_masks) * len(present))
        inside.append(True)
        try:
            return fuse_subsets(features, present, subset_masks)
        finally:
            inside.pop()

    model.fuse, model.fuse_subsets = counted, counted_subsets
    return calls


def test_every_registered_fusion_has_a_batched_case():
    from mmrobust.models import FUSIONS

    assert set(FUSIONS.names()) <= set(BATCHED_CASES)


@pytest.mark.parametrize("name", list(BATCHED_CASES))
def test_batched_subsets_equal_the_per_subset_loop_in_one_call(name):
    ds, model = _batched_case(name)
    subsets = all_subsets(len(ds.modalities))
    batch = batch_of(ds, 6)
    assert not batch.present.all()  # some samples lack modalities: the stacked mask must AND both
    model.eval()
    with torch.no_grad():
        loop = dict(subset_outputs(model, batch, subsets, batched=False))
        forward = {s: model(batch.restrict(s)) for s in subsets}
        list(subset_outputs(model, batch, subsets[:2]))  # the first call of a model learns its output size
        calls = _count_fuse_calls(model)
        batched = dict(subset_outputs(model, batch, subsets))
    assert calls == [len(subsets) * len(batch)]  # one stacked call for all subsets
    assert list(batched) == subsets
    for s in subsets:
        torch.testing.assert_close(batched[s], loop[s], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(batched[s], forward[s], rtol=1e-5, atol=1e-5)


def test_batched_chunks_respect_the_element_budget():
    ds, model = _batched_case("concat")  # features 3 × 6, logits 3 per sample: F = 18 elements
    model.eval()
    batch = batch_of(ds, 4)
    subsets = all_subsets(3)
    calls = _count_fuse_calls(model)
    with torch.no_grad():
        loop = dict(subset_outputs(model, batch, subsets, batched=False))
        calls.clear()
        out = dict(subset_outputs(model, batch, subsets, max_elements=2 * 4 * 18))  # 2 subsets per call
    assert calls == [4, 8, 8, 8]  # first call (one subset) learns the output size, then chunks of 2
    for s in subsets:
        torch.testing.assert_close(out[s], loop[s], rtol=1e-5, atol=1e-5)


def test_the_budget_counts_dense_outputs_larger_than_the_features():
    ds = tiny_dataset(image_size=16, missing_rate=0.3)
    config = {"encoder": {"name": "seg_cnn", "channels": [2, 2], "blocks": 1},
              "fusion": {"name": "concat", "keep_maps": True},
              "head": {"name": "segmentation", "scale": 4, "hidden": 4}}  # fmt: skip
    model = tiny_model(ds, config).eval()
    batch = batch_of(ds, 2)
    logits_per_sample = ds.num_classes * 16 * 16  # 768, features 3 × 2 × 4 × 4 = 96
    calls = _count_fuse_calls(model)
    with torch.no_grad():
        out = dict(subset_outputs(model, batch, all_subsets(3), max_elements=3 * 2 * logits_per_sample))
        loop = dict(subset_outputs(model, batch, all_subsets(3), batched=False))
    assert calls[:3] == [2, 6, 6]  # chunks of 3 subsets: bounded by the outputs, not the (smaller) features
    for s in all_subsets(3):
        torch.testing.assert_close(out[s], loop[s], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("why", ["training", "hook", "batch_statistics", "opt_out"])
def test_models_whose_outputs_depend_on_the_batch_keep_the_loop(why):
    ds, model = _batched_case("concat_mlp")
    model.eval()
    if why == "training":
        model.head_module.train()
    elif why == "hook":
        model.neck_module.register_forward_hook(lambda module, args, out: None)
    elif why == "batch_statistics":
        model.fusion.net.append(torch.nn.BatchNorm1d(6, track_running_stats=False))
    else:
        model.subset_batching = False
    calls = _count_fuse_calls(model)
    with torch.no_grad():
        list(subset_outputs(model, batch_of(ds, 4), all_subsets(3)))
    assert calls == [4] * 7


def test_one_forward_per_subset_still_means_one_forward_per_subset():
    ds, model = _batched_case("concat")
    model.eval()
    encoded = []
    encode = model.encode
    model.encode = lambda batch: encoded.append(batch.present.clone()) or encode(batch)
    with torch.no_grad():
        list(subset_outputs(model, batch_of(ds, 4), all_subsets(3), encode_once=False))
    assert len(encoded) == 7


def test_batched_streaming_metrics_equal_the_loop():
    ds, model = _batched_case("concat_mlp")
    task = Classification(ds.num_classes)
    batches = [batch_of(ds, 8, start=i) for i in range(0, 24, 8)]
    fast = evaluate_subsets(model, batches, all_subsets(3), task)
    slow = evaluate_subsets(model, batches, all_subsets(3), task, batched=False)
    assert all(fast[s].scores() == slow[s].scores() for s in all_subsets(3))


@pytest.mark.parametrize("name", ["concat_mlp", "mlp_shipped"])
def test_batched_concat_mlp_projects_each_modality_once_not_each_subset(name):
    ds, model = _batched_case(name)
    model.eval()
    batch = batch_of(ds, 6)
    first_rows: list[int] = []
    first = model.fusion.net[0]  # the Linear over the concatenation: [S·B, Σ F_m] in the repeated path
    first.forward = lambda x: first_rows.append(len(x)) or torch.nn.Linear.forward(first, x)
    with torch.no_grad():
        loop = dict(subset_outputs(model, batch, all_subsets(3), batched=False))
        assert first_rows == [6] * 7
        first_rows.clear()
        batched = dict(subset_outputs(model, batch, all_subsets(3)))
    assert first_rows == []  # replaced by one product per modality on the B rows
    for s in all_subsets(3):
        torch.testing.assert_close(batched[s], loop[s], rtol=1e-5, atol=1e-5)
