"""ESANet-style RGB-D segmentation: shapes, per-sample availability at every fusion point, gradients,
pretrained loading, parameter count, config building and errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmrobust.batch import Batch
from mmrobust.models import build_model
from mmrobust.models.esanet import ESANet
from mmrobust.models.necks import ProbabilisticNeck
from mmrobust.models.resnet import ResNet
from mmrobust.registry import ConfigError
from tests.models.seg_batches import MODS, SHAPES, random_seg_batch

K = 5
# ResNet-18 streams at width 16 (a 16x cheaper ResNet-18; width 64 where ImageNet-sized weights matter)
SMALL = {"architecture": "esanet", "encoder": "resnet18", "channels_decoder": [16, 16, 8], "width": 16}


def make_model(trained_bn: bool = True, **options) -> ESANet:
    torch.manual_seed(0)
    model = build_model({**SMALL, **options}, MODS, SHAPES, K)
    assert isinstance(model, ESANet)
    if trained_bn:
        trained_like_batchnorm(model)
    return model


def trained_like_batchnorm(model: torch.nn.Module) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics. At initialization
    (bias 0, running mean 0) a zero input gives exactly zero ResNet features, which would hide a missing
    mask; after training it does not."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))


@pytest.fixture(scope="module")
def model() -> ESANet:
    return make_model().eval()


def make_batch(present: list[list[bool]], seed: int = 0) -> Batch:
    return random_seg_batch(present, K, seed)


def with_input(batch: Batch, m: str, sample: int, value: torch.Tensor | float) -> Batch:
    inputs = {k: v.clone() for k, v in batch.inputs.items()}
    inputs[m][sample] = value
    return Batch(inputs, batch.present, batch.target, batch.modalities)


def test_output_and_feature_shapes(model):
    batch = make_batch([[True, True], [True, False]])
    with torch.no_grad():
        feats = model.fuse(model.encode(batch), batch.present)
        logits = model(batch)
    assert feats.shape == (2, 8, 16, 16) and model.neck_module.out_features == 8
    assert logits.shape == (2, K, 64, 64) and torch.isfinite(logits).all()
    assert model.fusion_inside_encoders and model.feature_shapes == SHAPES
    assert set(model.encoders) == set(MODS)


def test_sizes_that_are_multiples_of_4_but_not_of_32_give_logits_at_input_resolution():
    shapes = {"rgb": (3, 48, 80), "depth": (1, 48, 80)}  # layer4 map 2x3 from 1.5x2.5: rounded up
    model = build_model({**SMALL, "upsampling": "learned"}, MODS, shapes, K).eval()
    batch = Batch(
        {m: torch.randn(2, *shapes[m]) for m in MODS}, torch.ones(2, 2, dtype=torch.bool), torch.zeros(2), MODS
    )
    with torch.no_grad():
        assert model(batch).shape == (2, K, 48, 80)


def test_encode_only_selects_inputs_of_present_modalities(model):
    batch = make_batch([[True, False], [True, False]])
    feats = model.encode(batch)
    assert list(feats) == ["rgb"] and feats["rgb"] is batch.inputs["rgb"]


@pytest.mark.parametrize("absent", MODS)
def test_absent_input_content_and_nan_do_not_reach_the_sample(model, absent):
    batch = make_batch([[True, True], [absent != "rgb", absent != "depth"], [True, True]])
    with torch.no_grad():
        ref = model(batch)
        changed = model(with_input(batch, absent, 1, 7.0))
        nan = model(with_input(batch, absent, 1, float("nan")))
    assert torch.equal(ref, changed) and torch.equal(ref, nan)


def test_absent_modality_equals_zero_features_at_every_fusion_point(model):
    """Sample 1 lacks depth; its output must equal the output of a model whose depth SE branch outputs zeros
    at every fusion point (stem, layer1..4), computed with depth 'present' (an independent reference)."""
    batch = make_batch([[True, True], [True, False]])
    with torch.no_grad():
        out = model(batch)[1]
        hooks = [
            point.se["depth"].register_forward_hook(lambda _m, _i, o: torch.zeros_like(o))
            for point in model.fusion.points.values()
        ]
        try:
            full = make_batch([[True, True], [True, True]])
            ref = model(Batch(batch.inputs, full.present, batch.target, MODS))[1]
        finally:
            for h in hooks:
                h.remove()
    assert len(hooks) == 5
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_depth_absent_from_whole_batch_skips_the_stream_and_matches_mixed_batch(model):
    mixed = make_batch([[True, True], [True, False]])
    alone = Batch(
        {m: v[1:] for m, v in mixed.inputs.items()}, mixed.present[1:], mixed.target[1:], MODS
    )  # the same sample in a batch of its own: depth absent for the whole batch
    with torch.no_grad():
        feats = model.encode(alone)
        assert list(feats) == ["rgb"]
        a = model.head(model.neck(model.fuse(feats, alone.present)))
        b = model(mixed)[1:]
        # a modality missing from the features is absent for every sample
        c = model.head(model.neck(model.fuse({"rgb": mixed.inputs["rgb"][1:]}, torch.ones(1, 2, dtype=torch.bool))))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.equal(a, c)


def test_rgb_absent_gives_the_depth_branch_alone(model):
    batch = make_batch([[False, True], [False, True]])
    other = with_input(with_input(batch, "rgb", 0, 3.0), "rgb", 1, float("nan"))
    with torch.no_grad():
        assert torch.equal(model(batch), model(other))


def test_training_mode_nan_in_absent_input_does_not_leak_into_loss_or_gradients():
    model = make_model().train()
    batch = with_input(make_batch([[True, True], [True, False], [False, True]]), "depth", 1, float("nan"))
    batch = with_input(batch, "rgb", 2, float("nan"))
    loss = F.cross_entropy(model(batch), batch.target)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # the batch statistics of training-mode BatchNorm see zeros whatever the absent input held
    model.zero_grad()
    clean = with_input(with_input(batch, "depth", 1, 0.0), "rgb", 2, -4.0)
    torch.manual_seed(1)
    a = model(batch)
    b = model(clean)
    assert torch.equal(a, b)


def test_gradients_reach_both_encoders_when_both_present():
    model = make_model().train()
    batch = make_batch([[True, True], [True, True]])
    F.cross_entropy(model(batch), batch.target).backward()
    for m in MODS:
        for name, p in model.encoders[m].named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{m}.{name} got no gradient"
    for name in ("fusion.points.layer4.se.depth.fc1.weight", "fusion.points.stem.se.rgb.fc2.weight"):
        assert dict(model.named_parameters())[name].grad is not None


def test_pretrained_torchvision_state_dict_loads_into_both_streams(tmp_path):
    torch.manual_seed(3)
    source = ResNet(18, in_channels=3, num_classes=1000).state_dict()  # torchvision key names, with fc
    path = tmp_path / "resnet18.pth"
    torch.save(source, path)
    model = make_model(trained_bn=False, width=64, pretrained={"rgb": str(path), "depth": str(path)})
    rgb, depth = model.encoders["rgb"].state_dict(), model.encoders["depth"].state_dict()
    for key in ("conv1.weight", "layer1.0.conv1.weight", "layer4.1.bn2.running_var"):
        assert torch.equal(rgb[key], source[key])
    assert torch.equal(depth["layer3.0.downsample.0.weight"], source["layer3.0.downsample.0.weight"])
    torch.testing.assert_close(depth["conv1.weight"], source["conv1.weight"].sum(dim=1, keepdim=True))
    with pytest.raises(ConfigError, match=r"model.pretrained.rgb: .*does not exist"):
        make_model(width=64, pretrained={"rgb": str(tmp_path / "missing.pth")})
    with pytest.raises(ConfigError, match=r"model.pretrained.ir: not a modality"):
        make_model(width=64, pretrained={"ir": str(path)})
    with pytest.raises(ConfigError, match=r"model.pretrained.rgb: .* lacks .* tensors"):
        make_model(width=64, encoder="resnet34", pretrained={"rgb": str(path)})  # ResNet-18 file, ResNet-34 stream


def test_parameter_count_is_two_resnet18_trunks_plus_a_small_decoder():
    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    model = make_model(trained_bn=False, width=64)
    assert count(model.encoders["rgb"]) == count(ResNet(18, 3)) == 11_176_512
    assert count(model.encoders["depth"]) == count(ResNet(18, 1)) == 11_176_512 - 64 * 2 * 49
    extra = count(model) - count(model.encoders)
    assert 0 < extra < 1_500_000, extra  # SE fusions, skips, pyramid pooling, decoder, head


def test_probabilistic_neck_works_on_the_dense_map(model):
    neck = ProbabilisticNeck(model.neck_module.out_features).eval()
    batch = make_batch([[True, True], [False, True]])
    with torch.no_grad():
        x = model.fuse(model.encode(batch), batch.present)
        logits = model.head(neck(x))
        mu, logvar = neck.distribution(x)
    assert logits.shape == (2, K, 64, 64) and mu.shape == logvar.shape == x.shape


def test_learned_upsampling_and_no_context_build_and_run():
    model = make_model(upsampling="learned", context="none", decoder_blocks=[0, 1, 2]).eval()
    with torch.no_grad():
        assert model(make_batch([[True, False], [True, True]])).shape == (2, K, 64, 64)


def test_config_errors():
    with pytest.raises(ConfigError, match=r"model.channels: unknown key; accepted keys: .*channels_decoder"):
        build_model({"architecture": "esanet", "channels": [8]}, MODS, SHAPES, K)
    with pytest.raises(ConfigError, match=r"unknown architecture 'esanett'; valid architecture names: esanet"):
        build_model({"architecture": "esanett"}, MODS, SHAPES, K)
    with pytest.raises(ConfigError, match=r"model.encoder: expected"):
        build_model({"architecture": "esanet", "encoder": "resnet101"}, MODS, SHAPES, K)
    with pytest.raises(ConfigError, match=r"model.channels_decoder: expected 3"):
        build_model({"architecture": "esanet", "channels_decoder": [8, 8]}, MODS, SHAPES, K)
    with pytest.raises(ConfigError, match=r"exactly 2 image modalities"):
        build_model({"architecture": "esanet"}, ("rgb", "depth", "ir"), {**SHAPES, "ir": (1, 64, 64)}, K)
    with pytest.raises(ConfigError, match=r"divisible by 4"):
        build_model({"architecture": "esanet"}, MODS, {"rgb": (3, 62, 64), "depth": (1, 62, 64)}, K)


def test_fusion_module_is_not_called_directly(model):
    with pytest.raises(TypeError, match="model.fuse"):
        model.fusion([torch.zeros(1)])
