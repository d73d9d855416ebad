"""``MultimodalModel.encode`` runs each encoder on the samples that have its modality, and only on them."""

import pytest
import torch

from mmrobust.batch import Batch
from tests.conftest import MLP, SURF_TINY, batch_of, tiny_dataset, tiny_model

MLP_BN = {**MLP, "encoder": {**MLP["encoder"], "norm": "batch"}}  # BatchNorm1d in the encoders


def surf_batch(n: int = 6) -> tuple[torch.nn.Module, Batch]:
    """A tiny SURF-baseline model (BatchNorm2d, max-pool, SE) on random 3×16×16 images of 3 modalities."""
    from mmrobust.models import build_model

    torch.manual_seed(0)
    modalities = ("rgb", "depth", "ir")
    shapes = {m: (3, 16, 16) for m in modalities}
    model = build_model(SURF_TINY, modalities, shapes, 2)
    present = torch.tensor([[1, 1, 0], [0, 1, 0], [1, 0, 1], [1, 1, 1], [0, 1, 1], [1, 1, 0]], dtype=torch.bool)[:n]
    batch = Batch(
        inputs={m: torch.randn(n, *shapes[m]) for m in modalities},
        present=present,
        target=torch.zeros(n, dtype=torch.long),
        modalities=modalities,
    )
    return model, batch


@pytest.mark.parametrize("which", ["surf", "mlp_bn"])
def test_eval_features_equal_the_full_batch_on_present_rows_and_zero_elsewhere(which):
    if which == "surf":
        model, batch = surf_batch()
    else:
        ds = tiny_dataset()
        model, batch = tiny_model(ds, MLP_BN), batch_of(ds, 6)
        batch = batch.with_mask(surf_batch()[1].present)
    model.eval()
    with torch.no_grad():
        features = model.encode(batch)
        for j, m in enumerate(model.modalities):
            full = model.encoders[m](batch.inputs[m])  # the old computation: every row
            rows = batch.present[:, j]
            assert 0 < int(rows.sum()) < len(rows)  # partial presence for every modality
            torch.testing.assert_close(features[m][rows], full[rows], rtol=1e-5, atol=1e-6)
            assert torch.count_nonzero(features[m][~rows]) == 0, m
        # the logits of the batch are those of the full-batch encoders with absent features zeroed
        old = {m: model.encoders[m](batch.inputs[m]) for m in model.modalities}
        expected = model.head(model.neck(model.fuse(old, batch.present)))
        torch.testing.assert_close(model(batch), expected, rtol=1e-5, atol=1e-6)


def test_train_gradients_reach_only_present_rows_and_batchnorm_sees_only_them():
    model, batch = surf_batch()
    model.train()
    inputs = {m: x.clone().requires_grad_(True) for m, x in batch.inputs.items()}
    batch = Batch(inputs=inputs, present=batch.present, target=batch.target, modalities=batch.modalities)
    bn = {m: model.encoders[m].backbone.bn1 for m in model.modalities}  # the stem's BatchNorm2d
    before = {m: bn[m].running_mean.clone() for m in model.modalities}
    features = model.encode(batch)
    sum(f.square().sum() for f in features.values()).backward()
    for j, m in enumerate(model.modalities):
        rows = batch.present[:, j]
        grad = inputs[m].grad
        assert torch.count_nonzero(grad[~rows]) == 0, m  # absent samples: no gradient at all
        assert all(torch.count_nonzero(g) > 0 for g in grad[rows]), m
        # running mean updated from the present samples only: momentum 0.1 towards their batch mean
        stem = model.encoders[m].backbone.conv1(batch.inputs[m].detach()[rows])  # [n, C, h, w]
        expected = 0.9 * before[m] + 0.1 * stem.mean(dim=(0, 2, 3))
        torch.testing.assert_close(bn[m].running_mean, expected.detach(), rtol=1e-4, atol=1e-6)


def test_a_single_present_row_in_train_mode_runs_the_whole_batch_for_batchnorm1d():
    ds = tiny_dataset()
    model = tiny_model(ds, MLP_BN).train()
    batch = batch_of(ds, 4)
    present = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0]], dtype=torch.bool)  # b: 1 row, c: none
    seen: dict[str, int] = {}
    for m, encoder in model.encoders.items():
        encoder.register_forward_pre_hook(lambda mod, args, m=m: seen.__setitem__(m, len(args[0])))
    features = model.encode(batch.with_mask(present))  # a BatchNorm1d on 1 sample would raise
    assert seen == {"a": 4, "b": 4}  # c absent everywhere: skipped; b on the whole batch (fallback)
    assert set(features) == {"a", "b"} and features["b"].shape[0] == 4
    model.eval()
    seen.clear()
    with torch.no_grad():
        model.encode(batch.with_mask(present))
    assert seen == {"a": 4, "b": 1}  # eval mode: BatchNorm uses running statistics, 1 row is fine
