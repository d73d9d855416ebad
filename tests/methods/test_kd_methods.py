"""Privileged-information baselines: roles, the ``ordinary`` runner, ordinary-only, complete and the KD methods."""

import pytest
import torch
import torch.nn.functional as F

from mmrobust.experiment import runner_jobs
from mmrobust.losses.kd import hint_loss, response_kd, rkd_loss
from mmrobust.methods import METHODS, TrainState
from mmrobust.methods.distillation import Regressor
from mmrobust.registry import ConfigError
from mmrobust.roles import resolve_roles
from mmrobust.runners import RUNNERS
from tests.conftest import batch_of, method_context, tiny_dataset, tiny_model


def test_roles_defaults_and_errors():
    roles = resolve_roles(("a", "b", "c"))
    assert roles.ordinary == ("a",) and roles.privileged == ("b",)
    assert resolve_roles(("a", "b", "c"), ["b"]).privileged == ("a",)
    roles = resolve_roles(("a", "b", "c"), ["a", "c"], ["b"])
    assert roles.ordinary_subset == 0b101 and roles.privileged_subset == 0b010
    assert roles.ordinary_subsets() == [0b001, 0b100, 0b101]
    with pytest.raises(ConfigError, match="unknown modalities"):
        resolve_roles(("a", "b"), ["x"])


def test_ordinary_runner_evaluates_ordinary_subsets_only():
    (job,) = runner_jobs({"runner": "ordinary", "ordinary": ["a", "c"]}, ("a", "b", "c"))
    assert job.subsets == (0b001, 0b100, 0b101) and job.restrict_to is None
    assert RUNNERS.get("ordinary")(("a", "b", "c"))[0].subsets == (0b001,)  # default: the first modality
    assert len(runner_jobs({"runner": "single"}, ("a", "b", "c"))[0].subsets) == 7  # other runners unchanged


def test_ordinary_only_and_complete_restrict_the_batch(tmp_path):
    ds = tiny_dataset()
    model = tiny_model(ds)
    batch = batch_of(ds, 16)
    context = method_context(run_dir=tmp_path)
    step = METHODS.build("ordinary_only", {"ordinary": ["b"]}, context=context)(model, batch, TrainState())
    torch.testing.assert_close(step.loss, F.cross_entropy(model(batch.restrict(0b010)), batch.target))
    complete = METHODS.build("complete", {"ordinary": ["a"], "privileged": ["c"]}, context=context)
    assert complete.deployed_modalities() == ("a", "c")
    step = complete(model, batch, TrainState())
    torch.testing.assert_close(step.loss, F.cross_entropy(model(batch.restrict(0b101)), batch.target))


@pytest.fixture(scope="module")
def teacher_context(tmp_path_factory):
    """A context whose first KD method trains the teacher; the others load it (``teacher_checkpoint``)."""
    context = method_context(run_dir=tmp_path_factory.mktemp("kd"))
    first = METHODS.build("kd_logit", {}, context=context)
    first.prepare(tiny_model(tiny_dataset()))
    return context, str(context.run_dir / "teacher/checkpoints/best.ckpt")


@pytest.mark.parametrize("name", ["kd_logit", "kd_feature", "kd_relation"])
def test_student_sees_ordinary_inputs_and_the_frozen_teacher_the_privileged_ones(name, teacher_context):
    context, checkpoint = teacher_context
    ds = tiny_dataset()
    model = tiny_model(ds)
    method = METHODS.build(name, {"teacher_checkpoint": checkpoint}, context=context)
    method.prepare(model)
    method.train()
    assert not method.teacher.training and all(not p.requires_grad for p in method.teacher.parameters())
    batch = batch_of(ds, 16)
    step = method(model, batch, TrainState())
    # the student's logits are the model's on the ordinary modality alone
    torch.testing.assert_close(step.output, model(batch.restrict(0b001)))
    # the teacher sees a and b (not c): changing b changes the KD term, changing c does not
    inputs_b = {**batch.inputs, "b": batch.inputs["b"] + 1.0}
    inputs_c = {**batch.inputs, "c": batch.inputs["c"] + 1.0}
    kd = step.terms["kd"]
    assert method(model, type(batch)(inputs_c, batch.present, batch.target, batch.modalities), TrainState()).terms[
        "kd"
    ] == pytest.approx(float(kd), rel=1e-6)
    assert method(model, type(batch)(inputs_b, batch.present, batch.target, batch.modalities), TrainState()).terms[
        "kd"
    ] != pytest.approx(float(kd), rel=1e-6)
    torch.testing.assert_close(step.loss, step.terms["ce"] + step.terms["kd"])


def test_kd_terms_are_the_named_losses(teacher_context):
    context, checkpoint = teacher_context
    ds = tiny_dataset()
    batch = batch_of(ds, 16)
    for name, loss in (("kd_logit", response_kd), ("kd_feature", hint_loss), ("kd_relation", rkd_loss)):
        model = tiny_model(ds)
        method = METHODS.build(name, {"teacher_checkpoint": checkpoint, "weight": 0.5}, context=context)
        method.prepare(model)
        student = batch.restrict(0b001)
        fused = model.neck(model.fuse(model.encode(student), student.present))
        teacher, full = method.teacher, batch.restrict(0b011)
        t_fused = teacher.neck(teacher.fuse(teacher.encode(full), full.present))
        if name == "kd_logit":
            expected = loss(model.head(fused), teacher.head(t_fused), 4.0)
        elif name == "kd_feature":
            expected = loss(method.regressor(fused), t_fused)
        else:
            expected = loss(fused, t_fused)
        step = method(model, batch, TrainState())
        torch.testing.assert_close(step.terms["kd"], expected.detach())
        torch.testing.assert_close(step.loss, step.terms["ce"] + 0.5 * step.terms["kd"])


def test_regressor_is_a_1x1_map_on_vectors_and_maps():
    reg = Regressor(4)
    v, m = torch.randn(3, 4), torch.randn(3, 4, 2, 2)
    torch.testing.assert_close(reg(v), F.linear(v, reg.conv.weight.flatten(1), reg.conv.bias))
    assert reg(m).shape == m.shape
