import pytest

from mmrobust.models.encoders import ENCODERS
from mmrobust.registry import ConfigError, Registry, matches


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError, match=r"valid encoder names: (\w+, )*mlp, (\w+, )*resnet"):
        ENCODERS.get("transformer")


def test_unknown_key_and_wrong_type_name_the_key():
    with pytest.raises(ConfigError, match=r"model.encoder.hiden: unknown key; accepted keys: .*hidden"):
        ENCODERS.build("mlp", {"hiden": [3]}, where="model.encoder", in_shape=(4,))
    with pytest.raises(ConfigError, match=r"model.encoder.out_features: expected int, got str"):
        ENCODERS.build("mlp", {"out_features": "big"}, where="model.encoder", in_shape=(4,))


def test_missing_required_key():
    reg: Registry[object] = Registry("thing")

    @reg.register("needs_x")
    def needs_x(x: int) -> object:
        return x

    with pytest.raises(ConfigError, match="thing.x: required key is missing"):
        reg.build("needs_x", {})
    with pytest.raises(KeyError, match="registered twice"):
        reg.register("needs_x")(needs_x)


@pytest.mark.parametrize(
    ("value", "hint", "ok"),
    [
        (3, float, True),
        (True, int, False),
        ([1, 2], list[int], True),
        ([1, "a"], list[int], False),
        (None, int | None, True),
        ("x", list[str], False),
        ({"a": 1}, dict[str, int], True),
    ],
)
def test_type_matching(value, hint, ok):
    assert matches(value, hint) is ok
