import pytest
import torch

from mmrobust.models import ResNet, build_model, load_pretrained
from mmrobust.registry import ConfigError
from tests.conftest import SURF_TINY, batch_of, tiny_dataset, tiny_model


@pytest.mark.parametrize(("depth", "params"), [(18, 11_689_512), (34, 21_797_672), (50, 25_557_032)])
def test_resnet_matches_torchvision_parameter_count(depth, params):
    model = ResNet(depth, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == params  # torchvision's published counts


def test_resnet_state_dict_keys_are_torchvision_names():
    keys = ResNet(18, num_classes=1000).state_dict()
    for key in [
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.conv1.weight",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.num_batches_tracked",
        "layer4.1.bn2.bias",
        "fc.weight",
        "fc.bias",
    ]:
        assert key in keys
    assert len(keys) == 122  # torchvision resnet18: 62 parameters + 60 BN buffers
    assert keys["layer3.0.conv1.weight"].shape == (256, 128, 3, 3)
    assert ResNet(50, num_classes=10).state_dict()["layer1.0.conv3.weight"].shape == (256, 64, 1, 1)


def test_load_pretrained_skips_mismatched_and_loads_the_rest(tmp_path):
    source = ResNet(18, num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    target = ResNet(18, in_channels=1, num_classes=2)  # conv1 and fc differ
    report = load_pretrained(target, path)
    assert report.adapted == ("conv1.weight",) and "fc.weight" in report.unexpected + report.missing
    assert torch.equal(target.state_dict()["layer1.0.conv1.weight"], source.state_dict()["layer1.0.conv1.weight"])
    with pytest.raises(FileNotFoundError):
        load_pretrained(target, tmp_path / "nope.pth")


@pytest.mark.parametrize(("stem", "size"), [("imagenet", 2), ("surf", 2), ("cifar", 8)])
def test_stems_and_channels(stem, size):
    out = ResNet(18, in_channels=5, stem=stem, width=8).forward_features(torch.zeros(2, 5, 64, 64))
    assert out.shape == (2, 64, size, size)


def test_se_blocks_add_parameters():
    assert sum(p.numel() for p in ResNet(18, se=True).parameters()) > sum(p.numel() for p in ResNet(18).parameters())


def test_surf_baseline_shapes_and_skipped_encoders():
    ds = tiny_dataset(image_size=32, channels=3, num_classes=2)
    model = tiny_model(ds, SURF_TINY)
    batch = batch_of(ds, 4)
    assert model(batch).shape == (4, 2)
    assert model.feature_shapes["a"] == (16, 4, 4)  # 32 px: stem (conv/2, pool/2) 8, layer2 4
    calls = []
    for m in model.modalities:
        model.encoders[m].register_forward_hook(lambda mod, i, o, m=m: calls.append(m))
    model.eval()
    model(batch.restrict(0b101))
    assert calls == ["a", "c"]  # the encoder of a modality absent from the whole batch is not run


def test_fuse_zeroes_absent_features_per_sample():
    ds = tiny_dataset()
    model = tiny_model(ds, {"encoder": {"name": "mlp", "out_features": 4}, "fusion": {"name": "concat"}})
    batch = batch_of(ds, 3)
    present = torch.tensor([[True, False, True], [False, True, False], [True, True, True]])
    fused = model.fuse(model.encode(batch), present)  # [3, 12]
    assert torch.all(fused[0, 4:8] == 0) and torch.all(fused[1, :4] == 0) and torch.all(fused[1, 8:] == 0)
    assert torch.any(fused[2] != 0)


def test_model_config_errors():
    ds = tiny_dataset()
    with pytest.raises(ConfigError, match="valid fusion names"):
        build_model({"encoder": {"name": "mlp"}, "fusion": {"name": "attention"}}, ds.modalities, ds.shapes, 3)
    with pytest.raises(ConfigError, match="model.encoders: \\['x'\\] are not modalities"):
        build_model({"encoder": {"name": "mlp"}, "encoders": {"x": {"name": "mlp"}}}, ds.modalities, ds.shapes, 3)
    with pytest.raises(ConfigError, match="model.encoder.name: required"):
        build_model({"encoder": {"hidden": [2]}}, ds.modalities, ds.shapes, 3)
    with pytest.raises(ValueError, match="image inputs"):
        build_model({"encoder": {"name": "resnet"}}, ds.modalities, ds.shapes, 3)
