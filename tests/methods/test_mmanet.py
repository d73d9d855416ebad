"""MMANet: the teacher contract, the loss schedule, the ablation switches and the regularization network."""

import json

import pytest
import torch

from mmrobust.evaluation.evaluator import predict_subsets
from mmrobust.losses.mad import margin_aware_distillation
from mmrobust.losses.masked import masked_cross_entropy
from mmrobust.methods import METHODS, TrainState
from mmrobust.methods.mmanet import FusionRegularizer, HeadRegularizer, MMANet
from mmrobust.methods.modality_dropout import ModalityDropout
from mmrobust.models import build_model
from mmrobust.registry import ConfigError
from tests.conftest import MLP, SURF_TINY, batch_of, method_context, tiny_dataset, tiny_model

MLP_BN = {**MLP, "encoder": {**MLP["encoder"], "norm": "batch"}}  # BatchNorm: eval mode is observable


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One MMANet (BatchNorm model) whose teacher was trained by ``prepare``, with its context."""
    run_dir = tmp_path_factory.mktemp("mmanet")
    context = method_context(model_config=MLP_BN, run_dir=run_dir)
    method = MMANet(context, strong="a", begin_epoch=1)
    method.prepare(tiny_model(tiny_dataset(), MLP_BN))
    return method, context


def test_prepare_trains_the_teacher_in_a_sub_folder_and_records_its_provenance(trained):
    method, context = trained
    assert (context.run_dir / "teacher/checkpoints/best.ckpt").is_file()
    provenance = json.loads((context.run_dir / "teacher.json").read_text())
    assert provenance["source"] == "trained" and provenance["weights"] == "last"
    assert provenance["checkpoint"].endswith("teacher/checkpoints/last.ckpt")  # the converged model (default)
    assert provenance["epoch"] == 0 and 0.0 <= provenance["val_score"] <= 1.0
    assert "val_metric" in provenance  # from the checkpoint's config (none in this test context; see the CLI test)
    val = tiny_dataset("val")  # the teacher is selected on the full set's validation accuracy, not every subset's
    full = predict_subsets(method.teacher, [batch_of(val, 32)], [0b111])[0b111]
    assert provenance["val_score"] == pytest.approx(float((full.logits.argmax(1) == full.target).float().mean()))
    last = torch.load(provenance["checkpoint"], weights_only=True)["model"]
    for key, value in method.teacher.state_dict().items():
        torch.testing.assert_close(value, last[key])
    # a config-given strong modality is recorded as the MAR evidence
    assert json.loads((context.run_dir / "mar_mining.json").read_text())["source"] == "config"


def test_teacher_is_frozen_in_eval_mode_and_never_receives_gradients(trained):
    method, _ = trained
    ds = tiny_dataset()
    model = tiny_model(ds, MLP_BN)
    before = {k: v.clone() for k, v in method.teacher.state_dict().items()}
    method.train()
    assert method.training and not method.teacher.training and method.regularizer.training
    step = method(model, batch_of(ds, 32), TrainState(epoch=3, seed=0))
    step.loss.backward()
    assert step.terms["mad"] > 0
    assert all(not p.requires_grad and p.grad is None for p in method.teacher.parameters())
    for key, value in method.teacher.state_dict().items():  # BatchNorm running statistics untouched
        torch.testing.assert_close(value, before[key])
    assert any(p.grad is not None for p in method.regularizer.parameters())


def test_teacher_from_a_checkpoint_is_loaded_not_trained(trained, tmp_path):
    _, context = trained
    path = context.run_dir / "teacher/checkpoints/best.ckpt"
    reused = method_context(model_config=MLP_BN, run_dir=tmp_path)
    reused.fit = lambda *a, **k: pytest.fail("a given teacher checkpoint must not be retrained")
    method = MMANet(reused, teacher=str(path), beta=0.0)
    method.prepare(tiny_model(tiny_dataset(), MLP_BN))
    assert json.loads((tmp_path / "teacher.json").read_text())["source"] == "checkpoint"
    other = MMANet(method_context(run_dir=tmp_path), teacher=str(path), beta=0.0)  # model without BatchNorm
    with pytest.raises(ValueError, match=r"checkpoint .*best.ckpt does not fit this model: missing keys"):
        other.prepare(tiny_model(tiny_dataset()))


def test_schedule_ce_only_before_begin_epoch_then_ce_plus_mad_plus_mar(trained):
    method, context = trained
    ds = tiny_dataset()
    model = tiny_model(ds, MLP_BN).eval()  # eval: the two forwards below see the same BatchNorm statistics
    batch = batch_of(ds, 32)
    early = method(model, batch, TrainState(epoch=0, seed=7))
    md = ModalityDropout(context)(model, batch, TrainState(epoch=0, seed=7))
    torch.testing.assert_close(early.loss, md.loss)  # before begin_epoch: exactly the MD baseline
    assert early.terms["mad"] == 0 and early.terms["mar"] == 0

    state = TrainState(epoch=1, seed=7)
    late = method(model, batch, state)
    dropped = method.dropout.drop(batch, state)
    features = model.encode(dropped)
    fused = model.neck(model.fuse(features, dropped.present))
    teacher = method.teacher
    t_fused = teacher.neck(teacher.fuse(teacher.encode(batch), batch.present))  # complete modalities
    mad = margin_aware_distillation(fused, t_fused, teacher.head(t_fused))
    weak = ~dropped.present[:, 0]  # the subsets without the strong modality 'a'
    mar = masked_cross_entropy(method.regularizer(features, dropped.present, fused), batch.target, weak)
    torch.testing.assert_close(late.terms["mad"], mad.detach())
    torch.testing.assert_close(late.terms["mar"], mar.detach())
    torch.testing.assert_close(late.loss, late.terms["ce"] + 30.0 * mad + 0.5 * mar)


def test_ablation_switches_drop_the_unused_parts():
    context = method_context()
    context.fit = lambda *a, **k: pytest.fail("no teacher without MAD")
    mar_only = MMANet(context, alpha=0.0)
    mar_only.prepare(tiny_model(tiny_dataset()))
    assert mar_only.teacher is None and mar_only.distill is None and mar_only.regularizer is not None
    mad_only = MMANet(method_context(), beta=0.0, weighting="uniform")
    assert mad_only.regularizer is None and mad_only.miner is None and mad_only.distill.weighting == "uniform"
    ds = tiny_dataset()
    step = mar_only(tiny_model(ds), batch_of(ds, 16), TrainState(epoch=9))
    assert set(step.terms) == {"ce", "mar"}


def test_ablations_of_one_seed_share_the_teacher_and_the_regularizer_init(tmp_path):
    ds = tiny_dataset()
    runs = {}
    for name, config in {"mmanet": {}, "mad": {"beta": 0.0}, "mar": {"alpha": 0.0}}.items():
        context = method_context(run_dir=tmp_path / name)
        context.build_model = lambda: build_model(MLP, ds.modalities, ds.shapes, ds.num_classes)  # no reseeding
        torch.manual_seed(0)
        method = MMANet(context, strong="a", **config)
        method.prepare(tiny_model(ds))
        runs[name] = method, torch.rand(3)  # what the run draws next
    (full, after), (mad, after_mad), (mar, after_mar) = runs.values()
    tiny_model(ds)  # the deployment model alone
    assert torch.equal(after_mad, torch.rand(3))  # the teacher (built and trained) consumed no randomness
    assert torch.equal(after, after_mar)  # with or without a teacher, the same draws for the regularizer
    for key, value in full.teacher.state_dict().items():
        torch.testing.assert_close(value, mad.teacher.state_dict()[key])
    for key, value in full.regularizer.state_dict().items():
        torch.testing.assert_close(value, mar.regularizer.state_dict()[key])


def test_regularization_network_is_owned_by_the_method_and_not_exported():
    ds = tiny_dataset()
    model = tiny_model(ds)
    keys = set(model.state_dict())
    method = MMANet(method_context(), alpha=0.0, strong="b")
    method.prepare(model)
    assert isinstance(method.regularizer, FusionRegularizer) and len(method.regularizer.net.encoders) == 0
    assert set(model.state_dict()) == keys and any(k.startswith("regularizer.") for k in method.state_dict())
    batch = batch_of(ds, 32)
    dropped = method.dropout.drop(batch, TrainState())
    features = model.encode(dropped)
    fused = model.neck(model.fuse(features, dropped.present))
    method.mar(features, dropped, fused).backward()
    # the reference regularizer (fresh fusion + head on the dropped features) reaches the encoders only
    assert all(p.grad is None for p in model.fusion.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoders["a"].parameters())
    head = MMANet(method_context(), alpha=0.0, strong="b", regularizer="head")
    head.prepare(model)
    assert isinstance(head.regularizer, HeadRegularizer)
    model.zero_grad()
    fused = model.neck(model.fuse(model.encode(dropped), dropped.present))
    head.mar(features, dropped, fused).backward()
    assert all(p.grad is not None for p in model.fusion.parameters())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"signal": "mse"}, "method.signal: unknown mining signal 'mse'"),
        ({"weighting": "rank"}, "method.weighting: unknown weighting 'rank'"),
        ({"strong": "rgb"}, r"method.strong: 'rgb' is not a modality; valid: \['a', 'b', 'c'\]"),
        ({"mining_start": 5}, r"mining epochs \[mining_start, begin_epoch\) = \[5, 5\) are empty"),
        ({"alpha": 0.0, "teacher": "t.ckpt"}, "method.teacher: a teacher is only used by MAD"),
        ({"beta": -1.0}, "weights must be >= 0"),
        ({"teacher_checkpoint": "first"}, "method.teacher_checkpoint: expected 'last' or 'best'"),
        ({"regularizer": "mlp"}, "valid regularization network names: fusion, head"),
        ({"unknown": 1}, "method.unknown: unknown key"),
    ],
)
def test_config_errors(config, message):
    with pytest.raises(ConfigError, match=message):
        METHODS.build("mmanet", config, where="method", context=method_context())


def test_casia_surf_style_image_model_distills_the_last_feature_map(tmp_path):
    """The 3-modality SURF baseline: MAD on the fused map before pooling, a fresh trunk copy for MAR."""
    surf = {**SURF_TINY, "fusion": {**SURF_TINY["fusion"], "pool": False}}
    ds = tiny_dataset(image_size=16)
    context = method_context(dataset_overrides={"image_size": 16}, model_config=surf, run_dir=tmp_path)
    method = MMANet(context, strong="c", begin_epoch=0)
    model = tiny_model(ds, surf)
    method.prepare(model)
    batch = batch_of(ds, 8)
    dropped = method.dropout.drop(batch, TrainState())
    fused = model.neck(model.fuse(model.encode(dropped), dropped.present))
    assert fused.dim() == 4  # [B, C, H', W']: MAD flattens it per sample, the head pools it
    step = method(model, batch, TrainState(epoch=0))
    step.loss.backward()
    assert torch.isfinite(step.loss) and step.terms["mad"] > 0 and step.terms["mar"] > 0
    assert isinstance(method.regularizer.net.fusion, type(model.fusion))
    fresh, deployed = next(method.regularizer.net.fusion.parameters()), next(model.fusion.parameters())
    assert fresh.shape == deployed.shape and fresh is not deployed  # its own copy of the trunk
    assert all(p.grad is None for p in method.teacher.parameters())
