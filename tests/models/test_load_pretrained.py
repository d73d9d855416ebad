"""``load_pretrained``: wrapped checkpoints, input-channel adaptation of ``conv1``, the report, the errors."""

import logging

import pytest
import torch

from mmrobust.models import ResNet, load_pretrained
from mmrobust.models.resnet import adapt_input_conv
from mmrobust.registry import ConfigError


def tiny(in_channels: int = 3, num_classes: int = 0, seed: int = 0) -> ResNet:
    torch.manual_seed(seed)
    return ResNet(18, in_channels=in_channels, width=4, num_classes=num_classes)


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 3},  # Lightning
        lambda sd: {f"module.{k}": v for k, v in sd.items()},  # DataParallel / DDP
        lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 1},  # a checkpoint with its optimizer
    ],
    ids=["lightning", "data_parallel", "nested_model"],
)
def test_wrapped_state_dicts_load_completely(tmp_path, wrap):
    source, target = tiny(seed=0), tiny(seed=1)
    path = tmp_path / "weights.pth"
    torch.save(wrap(source.state_dict()), path)
    report = load_pretrained(target, path, strict=True)
    assert same(source, target)
    assert (
        report.missing == report.unexpected == report.adapted == ()
        and len(report.loaded) == len(target.state_dict()) == 120
    )


def test_prefix_loads_one_branch_of_a_two_stream_checkpoint(tmp_path):
    audio, visual = tiny(1, seed=0), tiny(3, seed=2)
    state = {f"module.audio_net.{k}": v for k, v in audio.state_dict().items()}
    state |= {f"module.visual_net.{k}": v for k, v in visual.state_dict().items()}
    path = tmp_path / "ogm.pth"
    torch.save({"model": state, "acc": 0.5}, path)
    target = tiny(1, seed=3)
    report = load_pretrained(target, path, prefix="audio_net.")
    assert same(audio, target) and report.unexpected == report.missing == ()


def test_report_lists_loaded_missing_and_unexpected_and_is_logged(tmp_path, caplog):
    path = tmp_path / "r18.pth"
    torch.save({**tiny(num_classes=10).state_dict(), "extra.weight": torch.zeros(2)}, path)
    with caplog.at_level(logging.INFO, logger="mmrobust.models.resnet"):
        report = load_pretrained(tiny(num_classes=2), path)  # fc has another class count
    assert set(report.unexpected) == {"fc.weight", "fc.bias", "extra.weight"}
    assert report.missing == ("fc.bias", "fc.weight") and "conv1.weight" in report.loaded
    assert "loaded 120 tensors" in caplog.text and "2 missing" in caplog.text and "3 unexpected" in caplog.text


def test_conv1_is_summed_for_one_channel_and_repeated_and_scaled_for_more(tmp_path):
    source = tiny(3)
    w = source.conv1.weight.detach()  # [4, 3, 7, 7]
    path = tmp_path / "rgb.pth"
    torch.save(source.state_dict(), path)
    gray, five = tiny(1, seed=1), tiny(5, seed=1)
    assert load_pretrained(gray, path).adapted == ("conv1.weight",)
    torch.testing.assert_close(gray.conv1.weight, w.sum(1, keepdim=True))
    load_pretrained(five, path)
    expected = torch.cat([w, w[:, :2]], dim=1) * (3 / 5)  # channels r, g, b, r, g, scaled by 3/5
    torch.testing.assert_close(five.conv1.weight, expected)
    # a gray image x through the summed kernel = (x, x, x) through the RGB one
    x = torch.randn(1, 1, 16, 16)
    torch.testing.assert_close(gray.conv1(x), source.conv1(x.expand(-1, 3, -1, -1)))


def test_adapt_input_conv_formula_and_the_response_to_a_constant_image():
    w = torch.randn(4, 3, 3, 3)
    for channels in (1, 2, 3, 6, 7):
        adapted = adapt_input_conv(w, channels)
        assert adapted.shape == (4, channels, 3, 3)
        if channels > 1:  # W'[:, c] = W[:, c mod 3] · 3 / C
            expected = torch.stack([w[:, c % 3] for c in range(channels)], 1) * (3 / channels)
            torch.testing.assert_close(adapted, expected)
        if channels % 3 == 0 or channels == 1:  # a constant image gets the response of the RGB kernel
            torch.testing.assert_close(adapted.sum(1), w.sum(1))


def test_without_adaptation_conv1_is_skipped(tmp_path):
    path = tmp_path / "rgb.pth"
    torch.save(tiny(3).state_dict(), path)
    report = load_pretrained(tiny(1), path, adapt_conv1=False)
    assert "conv1.weight" in report.unexpected and "conv1.weight" in report.missing and not report.adapted


def test_nothing_matching_or_strict_mismatch_is_one_config_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ConfigError, match=r"other.pth: none of its 1 tensors match the model"):
        load_pretrained(tiny(), path)
    good = tmp_path / "r18.pth"
    torch.save(tiny(num_classes=10).state_dict(), good)
    with pytest.raises(ConfigError, match=r"strict loading"):
        load_pretrained(tiny(num_classes=2), good, strict=True)
    with pytest.raises(FileNotFoundError):
        load_pretrained(tiny(), tmp_path / "missing.pth")
