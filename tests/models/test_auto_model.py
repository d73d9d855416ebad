"""model=auto: the encoders it picks per input shape, their output sizes, overrides and one-line errors."""

from __future__ import annotations

import pytest
import torch

from mmrobust.api import compose_config
from mmrobust.models import ENCODERS, build_model
from mmrobust.models.auto import describe, input_kind, resolve_auto
from mmrobust.registry import ConfigError

MODALITIES = ("img", "rgb", "aud", "vec")
SHAPES = {"img": (1, 8, 8), "rgb": (3, 32, 48), "aud": (1, 64, 101), "vec": (16,)}
KINDS = {"aud": "audio"}  # what a manifest's audio reader tells


def auto_config(*overrides: str) -> dict:
    """The model config of ``model=auto`` with these overrides, composed as the CLI does."""
    from omegaconf import OmegaConf

    model = compose_config(["model=auto", *overrides]).model
    return OmegaConf.to_container(model)  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("name", "shape", "last_map"),
    [
        ("conv", (1, 8, 8), (4, 4)),
        ("conv", (8, 8), (4, 4)),  # a 2-D array: one channel added by the encoder
        ("conv", (3, 32, 48), (4, 6)),
        ("spectrogram_cnn", (1, 64, 101), (4, 7)),
    ],
)
def test_conv_encoders_take_any_size_and_give_128_features(name, shape, last_map):
    torch.manual_seed(0)
    encoder = ENCODERS.build(name, {}, in_shape=shape)
    x = torch.randn(3, *shape)
    assert encoder(x).shape == (3, 128) == (3, encoder.out_features)
    x4 = x.unsqueeze(1) if len(shape) == 2 else x
    if name == "conv":
        assert encoder.stages(encoder.stem(x4)).shape[2:] == last_map  # no input pooled away, big ones reduced
    else:
        assert encoder.stages(x4).shape[2:] == last_map
    encoder.eval()  # a sample's features do not depend on the others in the batch
    torch.testing.assert_close(encoder(x[:1]), encoder(x)[:1], rtol=1e-4, atol=1e-5)


def test_conv_encoder_reduces_a_224_px_image_to_7x7():
    encoder = ENCODERS.build("conv", {"channels": [4, 4, 8, 16], "blocks": 1}, in_shape=(3, 224, 224))
    x = torch.zeros(1, 3, 224, 224)
    assert encoder.stages(encoder.stem(x)).shape == (1, 16, 7, 7)
    assert encoder(x).shape == (1, 16)


def test_auto_picks_an_encoder_per_kind_with_documented_output_sizes():
    choice = resolve_auto(auto_config(), MODALITIES, SHAPES, KINDS)
    assert choice.kinds == {"img": "image", "rgb": "image", "aud": "audio", "vec": "vector"}
    names = {m: spec["name"] for m, spec in choice.config["encoders"].items()}
    assert names == {"img": "conv", "rgb": "conv", "aud": "spectrogram_cnn", "vec": "mlp"}
    assert "auto" not in choice.config and choice.config["fusion"]["name"] == "concat_mlp"
    torch.manual_seed(0)
    model = build_model(auto_config(), MODALITIES, SHAPES, 5, KINDS)
    assert model.feature_shapes == {m: (128,) for m in MODALITIES}
    assert model.fusion.out_features == 256
    torch.manual_seed(0)
    again = build_model(choice.config, MODALITIES, SHAPES, 5)  # the resolved config builds the same model
    assert model.state_dict().keys() == again.state_dict().keys()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, again.state_dict()[key], msg=key)
    record = describe(choice, MODALITIES, SHAPES, 5)
    assert record["modalities"]["aud"] | {"parameters": 0} == {
        "kind": "audio",
        "input_shape": [1, 64, 101],
        "encoder": choice.config["encoders"]["aud"],
        "output_shape": [128],
        "parameters": 0,
    }
    assert record["fused_features"] == 256 and record["parameters"] == sum(p.numel() for p in model.parameters())


def test_without_a_reader_hint_a_spectrogram_shape_is_an_image():
    assert input_kind("s", (1, 64, 101)) == "image"
    assert input_kind("s", (1, 64, 101), "audio") == "audio"
    assert input_kind("v", (1, 16)) == "vector"


def test_one_line_overrides_need_no_plus():
    config = auto_config(
        "model.encoders.aud.name=resnet",
        "model.encoders.aud.depth=18",
        "model.encoders.rgb.channels=[8,16]",  # options of auto's own choice for one modality
        "model.auto.image.name=resnet",
        "model.auto.image.width=8",
        "model.fusion.name=concat",
    )
    choice = resolve_auto(config, MODALITIES, SHAPES, KINDS)
    enc = choice.config["encoders"]
    assert enc["aud"] == {"name": "resnet", "depth": 18} and choice.kinds["aud"] == "given"
    assert enc["img"] == {"name": "resnet", "width": 8}  # every image gets auto.image
    assert enc["rgb"] == {"name": "resnet", "width": 8, "channels": [8, 16]}  # foreign option: refused when built
    assert choice.config["fusion"] == {"name": "concat"}  # no concat_mlp options carried along
    model = build_model(resolve_auto(auto_config("model.fusion.name=sum"), MODALITIES, SHAPES, KINDS).config,
                        MODALITIES, SHAPES, 3)  # fmt: skip
    assert model.fusion.out_features == 128  # every default encoder gives 128 features: sum works


@pytest.mark.parametrize(
    ("shapes", "kinds", "expected"),
    [
        ({"a": (2, 3, 8, 8)}, {}, "model=auto: modality 'a' has inputs of shape [2, 3, 8, 8]"),
        ({"a": (1, 16000)}, {"a": "audio"}, "model=auto: modality 'a' is a raw waveform of shape [1, 16000]"),
    ],
)
def test_a_shape_auto_cannot_take_is_one_config_error_line(shapes, kinds, expected):
    with pytest.raises(ConfigError) as error:
        build_model(auto_config(), ("a",), shapes, 2, kinds)
    message = str(error.value)
    assert message.startswith(expected) and "model.encoders.a.name=" in message and "\n" not in message


def test_bad_auto_keys_and_encoder_shapes_are_config_errors():
    with pytest.raises(ConfigError, match=r"^model.auto: unknown keys \['video'\]"):
        resolve_auto({"auto": {"video": {"name": "conv"}}}, ("a",), {"a": (8,)})
    with pytest.raises(ConfigError, match=r"^model.encoders.a: conv encoder needs inputs \[C, H, W\] or \[H, W\]"):
        build_model(auto_config("model.encoders.a.name=conv"), ("a",), {"a": (16,)}, 2)
