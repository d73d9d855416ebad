"""Contract tests over the method registry: every method must satisfy these."""

import pytest
import torch

from mmrobust.data.missing import UniformSubsets
from mmrobust.methods import METHODS, TrainState
from mmrobust.methods.modality_dropout import ModalityDropout
from mmrobust.subsets import masks_to_subsets
from tests.conftest import MLP, batch_of, method_context, tiny_dataset, tiny_model

NAMES = [n for n in METHODS.names() if not n.startswith("test_")]  # not the test-only methods of other files


def build(name, ds):
    """A method with its default config, and the model it declares (``model_config`` of the tiny MLP config),
    prepared (teachers are really trained)."""
    method = METHODS.build(name, {}, context=method_context())
    model = tiny_model(ds, method.model_config(MLP))
    method.prepare(model)
    return model, method


@pytest.mark.parametrize("name", NAMES)
def test_finite_scalar_loss_and_gradients_reach_every_encoder(name):
    ds = tiny_dataset()
    model, method = build(name, ds)
    step = method(model, batch_of(ds, 32), TrainState(seed=0))
    assert step.loss.dim() == 0 and torch.isfinite(step.loss)
    assert step.output is not None and step.output.shape == (32, 3)
    step.loss.backward()
    deployed = method.deployed_modalities() or model.modalities
    for m, enc in model.encoders.items():
        grads = [p.grad for p in enc.parameters()]
        if m in deployed:
            assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), m
        else:  # a privileged or ignored modality: the deployed model does not take it
            assert all(g is None for g in grads), m


@pytest.mark.parametrize("name", NAMES)
def test_works_when_a_modality_is_absent_for_the_whole_batch(name):
    ds = tiny_dataset()
    model, method = build(name, ds)
    batch = batch_of(ds, 16).restrict(0b011)
    step = method(model, batch, TrainState(seed=0))
    step.loss.backward()
    assert torch.isfinite(step.loss)
    assert all(p.grad is None for p in model.encoders["c"].parameters())


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_a_seed(name):
    ds = tiny_dataset()
    losses = []
    for _ in range(2):
        torch.manual_seed(3)
        model, method = build(name, ds)
        torch.manual_seed(4)
        losses.append(method(model, batch_of(ds, 16), TrainState(seed=5, epoch=2)).loss)
    assert torch.equal(losses[0], losses[1])


def test_modality_dropout_keeps_a_nonempty_subset_of_what_the_sample_has():
    ds = tiny_dataset(missing_rate=0.4, samples_per_split=[256, 8, 8])
    method = ModalityDropout(method_context())
    batch = batch_of(ds, 256)
    dropped = method.drop(batch, TrainState(seed=1, epoch=0))
    assert torch.all(dropped.present <= batch.present)
    assert torch.all(dropped.present.any(dim=1))
    assert all(dropped.inputs[m] is batch.inputs[m] for m in batch.modalities)  # only the mask changes
    # with complete data every one of the 7 subsets is drawn, roughly uniformly
    full = batch_of(tiny_dataset(samples_per_split=[700, 8, 8]), 700)
    counts = torch.bincount(masks_to_subsets(method.drop(full, TrainState(seed=1)).present), minlength=8)[1:]
    assert counts.min() > 60 and counts.max() < 140


def test_modality_dropout_changes_draws_across_epochs_but_not_repeats():
    ds = tiny_dataset()
    method = ModalityDropout(method_context())
    batch = batch_of(ds, 64)
    e0 = method.drop(batch, TrainState(seed=0, epoch=0)).present
    assert torch.equal(e0, method.drop(batch, TrainState(seed=0, epoch=0)).present)
    assert not torch.equal(e0, method.drop(batch, TrainState(seed=0, epoch=1)).present)
    assert isinstance(method.policy, UniformSubsets)


def test_a_frozen_submodule_of_a_method_gets_no_gradient():
    """Contract for methods that own a frozen teacher: nothing reaches it."""
    for name in NAMES:
        ds = tiny_dataset()
        model, method = build(name, ds)
        frozen = [p for p in method.parameters() if not p.requires_grad]
        method(model, batch_of(ds, 16), TrainState(seed=0, epoch=99)).loss.backward()
        assert all(p.grad is None for p in frozen), name
