"""OS-MD: the deployment network (OS-MD encoder, CTN, translators), pretraining, JDN, balancing, export."""

import pytest
import torch

from mmrobust.engine.checkpoint import load_checkpoint
from mmrobust.losses.kd import kl_divergence
from mmrobust.losses.mmd import mmd2
from mmrobust.methods import METHODS, TrainState
from mmrobust.methods.osmd import OSMD
from mmrobust.methods.privileged import export_deployed
from mmrobust.models import ENCODERS
from mmrobust.models.osmd_encoder import CrossTranslation, OSMDEncoder, plain_model
from mmrobust.registry import ConfigError
from tests.conftest import MLP, batch_of, method_context, tiny_dataset, tiny_model

OSMD_MLP = {**MLP, "encoders": {"a": {"name": "osmd", "encoder": MLP["encoder"], "translator": "ctn"}}}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """An OS-MD method prepared (both pretrainings run) on a model declaring an osmd encoder for ``a``."""
    context = method_context(model_config=OSMD_MLP, run_dir=tmp_path_factory.mktemp("osmd"))
    model = tiny_model(tiny_dataset(), OSMD_MLP)
    method = OSMD(context, ordinary=["a"], privileged=["b"])
    method.prepare(model)
    return method, model, context


def test_ctn_applies_the_same_two_blocks_to_both_representations():
    ctn = CrossTranslation((8,))
    assert {n.split(".")[0] for n, _ in ctn.named_parameters()} == {"t1", "t2"}  # no per-input copies
    h, o = torch.randn(5, 8), torch.randn(5, 8)
    out = ctn(h, o)
    s1, o1, s2, o2 = out.features
    assert out.pairs[0][0] is s1 and out.pairs[0][1] is o1 and out.pairs[1][0] is s2 and out.pairs[1][1] is o2
    ctn.eval()  # with running statistics, T(φ) does not depend on the other input: T1 is one function of both
    s1, o1, s2, o2 = ctn(h, o).features
    torch.testing.assert_close(s1, ctn.t1(h))
    torch.testing.assert_close(o1, ctn.t1(o))
    torch.testing.assert_close(o2, ctn.t2(o))
    # in training, one BatchNorm statistic over both inputs (as at inference)
    ctn.train()
    torch.testing.assert_close(ctn(h, o).features[0], ctn.t1(torch.cat([h, o]))[:5])
    # the loss of either input reaches the shared parameters
    ctn.zero_grad()
    ctn(h, o).features[1].sum().backward()
    assert ctn.t1[0].weight.grad is not None and ctn.t1[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("translator", "features", "pairs"), [("ctn", 4, 2), ("concat", 2, 0), ("autoencoder", 4, 1)])
def test_osmd_encoder_on_vectors_and_maps(translator, features, pairs):
    vec = ENCODERS.build("osmd", {"encoder": MLP["encoder"], "translator": translator}, in_shape=(6,))
    parts = vec.parts(torch.randn(4, 6))
    assert parts.output.shape == parts.ordinary.shape == parts.hallucinated.shape == (4, 8)
    assert len(parts.translation.features) == features and len(parts.translation.pairs) == pairs
    assert not torch.equal(parts.hallucinated, parts.ordinary)  # φ_s and φ_o are separate networks
    spec = {"name": "resnet", "depth": 18, "stem": "surf", "width": 4, "last_stage": "layer1", "pool": False}
    maps = ENCODERS.build("osmd", {"encoder": spec, "translator": translator}, in_shape=(3, 16, 16))
    out = maps.parts(torch.randn(2, 3, 16, 16))
    assert out.output.shape == out.ordinary.shape and out.output.dim() == 4
    assert isinstance(maps.fuse, torch.nn.Conv2d) and maps.fuse.kernel_size == (1, 1)


def test_prepare_pretrains_phi_o_phi_s_from_the_ordinary_model_and_freezes_the_privileged(prepared):
    method, model, context = prepared
    ordinary = load_checkpoint(context.run_dir / "pretrain_ordinary/checkpoints/best.ckpt")["model"]
    privileged = load_checkpoint(context.run_dir / "pretrain_privileged/checkpoints/best.ckpt")["model"]
    encoder = model.encoders["a"]
    for name, value in encoder.ordinary_encoder.state_dict().items():
        torch.testing.assert_close(value, ordinary[f"encoders.a.{name}"])
        torch.testing.assert_close(encoder.hallucination_encoder.state_dict()[name], ordinary[f"encoders.a.{name}"])
    for name, value in method.privileged_model.state_dict().items():
        torch.testing.assert_close(value, privileged[name])
    assert all(not p.requires_grad for p in method.privileged_model.parameters())
    method.train()
    assert not method.privileged_model.training and method.training


def test_checkpoints_replace_the_pretraining(prepared, tmp_path):
    _, _, trained_context = prepared

    def no_fit(*args, **kwargs):
        raise AssertionError("nothing must be trained when both checkpoints are given")

    context = method_context(model_config=OSMD_MLP, run_dir=tmp_path)
    context.fit = no_fit
    root = trained_context.run_dir
    method = OSMD(
        context,
        ordinary_checkpoint=str(root / "pretrain_ordinary/checkpoints/best.ckpt"),
        privileged_checkpoint=str(root / "pretrain_privileged/checkpoints/best.ckpt"),
    )
    model = tiny_model(tiny_dataset(), OSMD_MLP)
    method.prepare(model)
    loaded, trained = method.privileged_model.encoders["b"], prepared[0].privileged_model.encoders["b"]
    torch.testing.assert_close(loaded.net[0].weight, trained.net[0].weight)


def test_jdn_terms_and_gradnorm_weights_are_logged_every_step(prepared):
    method, model, _ = prepared
    ds = tiny_dataset()
    batch = batch_of(ds, 16)
    before = method.balancer.weights.clone()
    step = method(model, batch, TrainState())
    assert {"ce", "mmd", "kl", "transfer", "translation", "alpha", "beta"} <= set(step.terms)
    assert {"gradnorm_ratio_transfer", "gradnorm_ratio_translation"} <= set(step.terms)
    torch.testing.assert_close(torch.stack([step.terms["alpha"], step.terms["beta"]]), before)
    assert not torch.equal(method.balancer.weights, before)  # one GradNorm update per training step
    # the JDN terms by hand: MMD²(φ_s x_a, φ_p x_b) and KL(softmax f_p(φ_p x_b) ‖ softmax f_s(φ_s x_a))
    with torch.no_grad():
        zs = model.encoders["a"].parts(batch.restrict(0b001).inputs["a"]).hallucinated
        net = method.privileged_model
        zp = net.encoders["b"](batch.inputs["b"])
        only_b = torch.zeros_like(batch.present)
        only_b[:, 1] = True
        logits_p = net.head(net.neck(net.fuse({"b": zp}, only_b)))
        torch.testing.assert_close(step.terms["mmd"], mmd2(zs, zp))
        torch.testing.assert_close(step.terms["kl"], kl_divergence(method.transfer.head(zs), logits_p))


def test_fixed_balancing_uses_alpha_and_beta(tmp_path):
    context = method_context(run_dir=tmp_path)
    method = METHODS.build("osmd", {"balancing": "fixed", "alpha": 0.3, "beta": 0.7}, context=context)
    ds = tiny_dataset()
    model = tiny_model(ds, method.model_config(MLP))
    method.prepare(model)
    assert method.balancer is None
    step = method(model, batch_of(ds, 16), TrainState())
    expected = step.terms["ce"] + 0.3 * step.terms["transfer"] + 0.7 * step.terms["translation"]
    torch.testing.assert_close(step.loss.detach(), expected)
    assert step.terms["alpha"] == pytest.approx(0.3) and step.terms["beta"] == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("config", "present", "absent"),
    [
        ({"transfer": "none"}, {"translation", "beta"}, {"transfer", "alpha", "mmd"}),
        ({"transfer": "feature"}, {"hint", "transfer"}, {"mmd", "kl"}),
        ({"transfer": "relation"}, {"rkd", "transfer"}, {"mmd", "kl"}),
        ({"translator": "concat"}, {"mmd", "alpha"}, {"translation", "beta"}),
        ({"translator": "autoencoder"}, {"mmd", "translation"}, set()),
    ],
)
def test_ablations(config, present, absent, tmp_path):
    method = METHODS.build("osmd", {**config, "balancing": "fixed"}, context=method_context(run_dir=tmp_path))
    ds = tiny_dataset()
    model = tiny_model(ds, method.model_config(MLP))  # the plain encoder spec is wrapped with the configured translator
    method.prepare(model)
    assert model.encoders["a"].translator_name == config.get("translator", "ctn")
    step = method(model, batch_of(ds, 16), TrainState())
    assert present <= set(step.terms) and not absent & set(step.terms)
    step.loss.backward()
    assert torch.isfinite(step.loss)


def test_samples_without_the_privileged_modality_get_no_transfer_loss(prepared):
    method, model, _ = prepared
    ds = tiny_dataset()
    step = method(model, batch_of(ds, 16).restrict(0b101), TrainState())  # b absent for the whole batch
    assert step.terms["transfer"] == 0 and torch.isfinite(step.loss)


def test_exported_deployed_model_takes_only_the_ordinary_inputs(prepared):
    _, model, _ = prepared
    ds = tiny_dataset("test")
    batch = batch_of(ds, 8)
    model.eval()
    deployed = export_deployed(model, ["a"]).eval()
    with torch.no_grad():
        expected = model(batch.restrict(0b001))  # the model with the privileged (and ignored) modality absent
        torch.testing.assert_close(deployed(batch.inputs["a"]), expected)
    model.train()
    names = {n for n, _ in deployed.named_parameters()}
    assert names and all(not n.startswith(("encoders.b.", "encoders.c.")) for n in names)
    assert set(deployed.encoders) == {"a"}
    with pytest.raises(ValueError, match="takes 1 inputs"):
        deployed(batch.inputs["a"], batch.inputs["b"])
    with pytest.raises(ValueError, match="not modalities"):
        export_deployed(model, ["z"])


def test_plain_model_unwraps_osmd_encoders():
    model = plain_model(tiny_model(tiny_dataset(), OSMD_MLP))
    assert not any(isinstance(e, OSMDEncoder) for e in model.encoders.values())
    assert model(batch_of(tiny_dataset(), 4)).shape == (4, 3)


def test_configuration_errors(tmp_path):
    context = method_context(run_dir=tmp_path)
    with pytest.raises(ConfigError, match="exactly one privileged"):
        OSMD(context, ordinary=["a"], privileged=["b", "c"])
    with pytest.raises(ConfigError, match="method.transfer"):
        OSMD(context, transfer="adversarial")
    with pytest.raises(ConfigError, match="overlap"):
        OSMD(context, ordinary=["a"], privileged=["a"])
    with pytest.raises(ConfigError, match="unknown modalities"):
        OSMD(context, ordinary=["rgb"])
    mismatch = OSMD(context, translator="autoencoder")
    with pytest.raises(ConfigError, match="method.translator"):
        mismatch.model_config(OSMD_MLP)
    with pytest.raises(ConfigError, match="method.translator"):
        mismatch.prepare(tiny_model(tiny_dataset(), OSMD_MLP))
    with pytest.raises(ConfigError, match="not an osmd encoder; build the model from method.model_config"):
        OSMD(context).prepare(tiny_model(tiny_dataset()))
    narrow = {**MLP, "encoders": {"b": {**MLP["encoder"], "out_features": 5}}}
    shape_context = method_context(model_config=narrow, run_dir=tmp_path / "narrow")
    with pytest.raises(ConfigError, match="one feature shape"):
        method = OSMD(shape_context)
        method.prepare(tiny_model(tiny_dataset(), method.model_config(narrow)))
    # relation KD compares relations only: features of other sizes are fine
    relation_context = method_context(model_config=narrow, run_dir=tmp_path / "relation")
    method = OSMD(relation_context, transfer="relation")
    method.prepare(tiny_model(tiny_dataset(), method.model_config(narrow)))


def test_model_config_wraps_the_encoders_of_the_ordinary_modalities_only(tmp_path):
    method = OSMD(method_context(run_dir=tmp_path), ordinary=["a", "c"], privileged=["b"], translator="concat")
    config = {**MLP, "encoders": {"c": {"name": "mlp", "out_features": 8}}}
    declared = method.model_config(config)
    assert declared["encoders"] == {
        "a": {"name": "osmd", "encoder": MLP["encoder"], "translator": "concat"},
        "c": {"name": "osmd", "encoder": {"name": "mlp", "out_features": 8}, "translator": "concat"},
    }
    assert config["encoders"] == {"c": {"name": "mlp", "out_features": 8}}  # the given config is not changed
    assert method.model_config(declared) == declared  # idempotent
    model = tiny_model(tiny_dataset(), declared)
    assert isinstance(model.encoders["a"], OSMDEncoder) and not isinstance(model.encoders["b"], OSMDEncoder)
    assert method.model_config({"architecture": "esanet"}) == {"architecture": "esanet"}  # prepare refuses it
