"""Modality dropout and MMANet after the encoders skip the dropped rows: the eval-mode semantics are unchanged."""

import torch

from mmrobust.methods import MethodContext, TrainState
from mmrobust.methods.base import frozen
from mmrobust.methods.mmanet import REGULARIZERS, MMANet
from mmrobust.methods.modality_dropout import ModalityDropout
from tests.conftest import MLP, batch_of, tiny_dataset, tiny_model

MLP_BN = {**MLP, "encoder": {**MLP["encoder"], "norm": "batch"}}


def context(tmp_path) -> MethodContext:
    ds = tiny_dataset()
    return MethodContext(ds.modalities, ds.num_classes, lambda: tiny_model(ds, MLP_BN), fit=None, run_dir=tmp_path)  # type: ignore[arg-type]


def full_batch_logits(model, batch, present):
    """The computation before the change: every encoder on every row, dropped features zeroed by ``fuse``."""
    features = {m: model.encoders[m](batch.inputs[m]) for m in model.modalities}
    return model.head(model.neck(model.fuse(features, present)))


def test_modality_dropout_step_in_eval_mode_equals_the_full_batch_computation(tmp_path):
    ds = tiny_dataset()
    model = tiny_model(ds, MLP_BN).eval()
    method = ModalityDropout(context(tmp_path))
    batch, state = batch_of(ds, 32), TrainState(seed=3, epoch=1)
    present = method.drop(batch, state).present
    assert 0 < int(present.sum()) < present.numel()  # something dropped, something kept
    step = method(model, batch, state)
    expected = full_batch_logits(model, batch, present)
    torch.testing.assert_close(step.output, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(step.loss, torch.nn.functional.cross_entropy(expected, batch.target))
    # a dropped modality and a modality missing from the data give the same logits (both rows are skipped)
    model.train()
    torch.testing.assert_close(method(model, batch, state).output, model(batch.with_present(present)))


def test_mmanet_mar_on_weak_rows_equals_the_masked_loss_over_the_batch(tmp_path):
    ds = tiny_dataset()
    ctx = context(tmp_path)
    method = MMANet(ctx, alpha=1.0, beta=1.0, strong="a", begin_epoch=0)
    method.teacher = frozen(tiny_model(ds, MLP_BN))
    method.regularizer = REGULARIZERS.build("fusion", {}, fresh=ctx.build_model())
    model = tiny_model(ds, MLP_BN)
    method.eval()
    model.eval()
    batch, state = batch_of(ds, 32), TrainState(seed=1, epoch=0)
    dropped = method.dropout.drop(batch, state)
    weak = method.miner.is_weak(dropped.present)
    assert 2 <= int(weak.sum()) < len(weak)  # the weak-rows path is the one under test
    step = method(model, batch, state)
    # before the change: the regularizer on every row, the CE masked to the weak rows
    features = {m: model.encoders[m](batch.inputs[m]) for m in model.modalities}
    fused = model.neck(model.fuse(features, dropped.present))
    reg_logits = method.regularizer(features, dropped.present, fused)
    mar = ctx.task.loss(reg_logits, batch.target, weak)
    torch.testing.assert_close(step.terms["mar"], mar.detach(), rtol=1e-5, atol=1e-6)
    t_fused = method.teacher.neck(method.teacher.fuse(method.teacher.encode(batch), batch.present))
    mad = method.distill(fused, t_fused, method.teacher.head(t_fused))
    torch.testing.assert_close(step.terms["mad"], mad.detach(), rtol=1e-5, atol=1e-6)
    # in train mode the step runs and its MAR gradient reaches the encoders and the regularization network
    model.train()
    method.train()
    step = method(model, batch, state)
    step.loss.backward()
    assert all(p.grad is not None for p in method.regularizer.parameters() if p.requires_grad)
    assert all(p.grad is None for p in method.teacher.parameters())
