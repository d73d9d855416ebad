"""Modality dropout drops encoder OUTPUTS (the papers' Bernoulli indicator after the encoder), never inputs:
each encoder sees the real inputs of the samples that keep its modality (BatchNorm in train mode normalizes
over those), never zeroed rows; ``MultimodalModel.encode`` skips the dropped rows."""

import pytest
import torch

from mmrobust.methods import MethodContext, TrainState
from mmrobust.methods.dmrnet import DMRNet
from mmrobust.methods.mmanet import MMANet
from mmrobust.methods.modality_dropout import ModalityDropout
from tests.conftest import MLP, batch_of, tiny_dataset, tiny_model

MLP_BN = {**MLP, "encoder": {**MLP["encoder"], "norm": "batch"}}


def context(tmp_path) -> MethodContext:
    """A context without sub-model training (nothing here trains a teacher)."""
    ds = tiny_dataset()
    return MethodContext(ds.modalities, ds.num_classes, lambda: tiny_model(ds, MLP_BN), fit=None, run_dir=tmp_path)  # type: ignore[arg-type]


def record_encoder_inputs(model):
    seen = {}
    for m, encoder in model.encoders.items():
        encoder.register_forward_pre_hook(lambda module, args, m=m: seen.__setitem__(m, args[0].clone()))
    return seen


@pytest.mark.parametrize(
    "build",
    [
        lambda ctx: ModalityDropout(ctx),
        lambda ctx: MMANet(ctx, alpha=1.0, beta=0.0, begin_epoch=5),  # before begin_epoch: no teacher needed
        lambda ctx: DMRNet(ctx, beta=0.0),
    ],
    ids=["modality_dropout", "mmanet", "dmrnet"],
)
def test_dropping_methods_leave_the_encoder_inputs_untouched(build, tmp_path):
    ds = tiny_dataset()
    method = build(context(tmp_path))
    model = tiny_model(ds, method.model_config(MLP_BN)).train()  # dmrnet declares its probabilistic neck
    batch = batch_of(ds, 32)
    seen = record_encoder_inputs(model)
    state = TrainState(seed=3, epoch=0)
    method(model, batch, state)
    dropout = method if isinstance(method, ModalityDropout) else method.dropout
    dropped = dropout.drop(batch, state)
    assert not torch.equal(dropped.present, batch.present)  # something was dropped
    assert set(seen) == set(model.modalities)
    for j, m in enumerate(model.modalities):
        rows = dropped.present[:, j]
        assert torch.equal(seen[m], batch.inputs[m][rows]), m  # the kept samples' real inputs, no all-zero rows


def test_logits_equal_zeroing_only_the_features_with_batchnorm_in_train_mode(tmp_path):
    ds = tiny_dataset()
    model = tiny_model(ds, MLP_BN).train()
    method = ModalityDropout(context(tmp_path))
    batch, state = batch_of(ds, 32), TrainState(seed=3, epoch=1)
    step = method(model, batch, state)
    present = method.drop(batch, state).present
    features = {}
    for j, m in enumerate(model.modalities):  # each encoder on the kept samples (their batch statistics)
        rows = present[:, j].nonzero().flatten()
        f = model.encoders[m](batch.inputs[m][rows])
        features[m] = f.new_zeros(len(batch), *f.shape[1:]).index_copy(0, rows, f)  # dropped rows: 0
    expected = model.head(model.neck(model.fuse(features, present)))  # the indicator on the encoder outputs
    torch.testing.assert_close(step.output, expected, rtol=0, atol=0)
    # zeroing the inputs as well gives the same logits: the encoders never see the dropped rows
    torch.testing.assert_close(model(batch.with_present(present)), expected, rtol=0, atol=0)


def test_with_mask_changes_only_the_mask_and_checks_its_shape():
    batch = batch_of(tiny_dataset(), 4)
    mask = torch.tensor([[True, False, True]] * 4)
    masked = batch.with_mask(mask)
    assert torch.equal(masked.present, mask) and all(masked.inputs[m] is batch.inputs[m] for m in batch.modalities)
    with pytest.raises(ValueError, match=r"with_mask needs a bool mask of shape \(4, 3\)"):
        batch.with_mask(mask[:2])
