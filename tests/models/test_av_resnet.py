"""``model=av_resnet18``: OGM-GE's audio-visual network (encoders, fusions) and the methods that train it."""

import copy
import math
from importlib import resources
from pathlib import Path

import pytest
import torch
import yaml

from mmrobust.batch import Batch
from mmrobust.methods import METHODS, TrainState
from mmrobust.methods.base import MethodContext
from mmrobust.methods.ogm_ge import concat_head
from mmrobust.models import ENCODERS, FUSIONS, build_model
from mmrobust.models.av_resnet import AudioResNet, FramesResNet

AV = ("audio", "visual")
K = 3  # classes


def av_config() -> dict:
    return yaml.safe_load(resources.files("mmrobust.configs.model").joinpath("av_resnet18.yaml").read_text())


def tiny_config(fusion: str) -> dict:
    """The shipped config at width 4 (8·4 = 32-d features) with another fusion."""
    config = av_config()
    config["encoder"]["width"] = config["encoders"]["audio"]["width"] = 4
    config["fusion"] = {"name": fusion}
    return config


TINY_SHAPES = {"audio": (1, 16, 12), "visual": (2, 3, 16, 16)}  # spectrogram [1, F, T]; clip [T, 3, H, W]


def tiny_batch(n: int = 4) -> Batch:
    torch.manual_seed(1)
    inputs = {m: torch.randn(n, *s) for m, s in TINY_SHAPES.items()}
    present = torch.ones(n, 2, dtype=torch.bool)
    present[0, 1] = present[1, 0] = False  # sample 0 lacks the visual clip, sample 1 the audio
    for j, m in enumerate(AV):
        inputs[m][~present[:, j]] = 0
    return Batch(inputs, present, torch.arange(n) % K, AV, index=torch.arange(n))


# ------------------------------------------------------------------------------ encoders and the config
@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(0)
    return build_model(av_config(), AV, {"audio": (1, 64, 48), "visual": (1, 3, 32, 32)}, 6)


def test_paper_config_is_ogm_ge_network_with_its_parameter_count(paper_model):
    """OGM-GE's AVClassifier on CREMA-D (6 classes), counted from its architecture: two torchvision ResNet-18
    trunks without fc (11,689,512 − 513,000 = 11,176,512 each), the audio one with a 1-channel 7×7 conv1
    (−2·64·49), and ConcatFusion's Linear(1024, 6)."""
    assert isinstance(paper_model.encoders["audio"], AudioResNet)
    assert isinstance(paper_model.encoders["visual"], FramesResNet)
    assert paper_model.feature_shapes == {"audio": (512,), "visual": (512,)}
    trunk = 11_689_512 - (512 * 1000 + 1000)
    expected = (trunk - 2 * 64 * 7 * 7) + trunk + (1024 * 6 + 6)
    assert sum(p.numel() for p in paper_model.parameters()) == expected == 22_352_902


def test_av_mnist_image_gets_the_frames_encoder_as_a_one_frame_clip():
    config = tiny_config("concat")
    model = build_model(config, ("image", "audio"), {"image": (1, 28, 28), "audio": (1, 112, 112)}, 10)
    assert isinstance(model.encoders["image"], FramesResNet) and isinstance(model.encoders["audio"], AudioResNet)
    assert model.feature_shapes == {"image": (32,), "audio": (32,)}


def test_frames_encoder_shares_one_trunk_over_frames_and_pools_time_and_space():
    torch.manual_seed(0)
    clips = torch.randn(3, 2, 3, 16, 16)  # [B, T, 3, H, W]
    for pool, reduce in (("avg", torch.mean), ("max", torch.amax)):
        enc = ENCODERS.build("frames_resnet", {"width": 4, "temporal_pool": pool}, in_shape=(2, 3, 16, 16)).eval()
        with torch.no_grad():
            out = enc(clips)
            per_frame = torch.stack([enc.backbone.forward_features(clips[:, t]) for t in range(2)], 1)  # [B,T,C,h,w]
        assert out.shape == (3, 32)
        torch.testing.assert_close(out, reduce(per_frame, dim=(1, 3, 4)))


def test_audio_encoder_takes_one_channel_spectrograms_with_or_without_the_channel_axis():
    torch.manual_seed(0)
    spec = torch.randn(2, 1, 16, 12)
    with_axis = ENCODERS.build("audio_resnet", {"width": 4}, in_shape=(1, 16, 12)).eval()
    without = ENCODERS.build("audio_resnet", {"width": 4}, in_shape=(16, 12)).eval()
    without.load_state_dict(with_axis.state_dict())
    assert with_axis.backbone.conv1.in_channels == 1
    with torch.no_grad():
        torch.testing.assert_close(with_axis(spec), without(spec[:, 0]))
    assert with_axis(spec).shape == (2, 32)


# ------------------------------------------------------------------------------ fusions
def set_linear(layer: torch.nn.Linear, weight: list[list[float]], bias: list[float]) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))


def test_concat_and_sum_hand_computed():
    a, v = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 5.0]])
    present = torch.ones(1, 2, dtype=torch.bool)
    concat = FUSIONS.build("concat", {}, feature_shapes=[(2,), (2,)])
    assert concat([a, v], present).tolist() == [[1.0, 2.0, 3.0, 5.0]]  # plain: the head slices are W[:, :2], W[:, 2:]
    assert FUSIONS.build("sum", {}, feature_shapes=[(2,), (2,)])([a, v], present).tolist() == [[4.0, 7.0]]


def test_film_hand_computed_and_the_condition_option():
    c, x = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0]])
    present = torch.ones(1, 2, dtype=torch.bool)
    film = FUSIONS.build("film", {}, feature_shapes=[(2,), (2,)])
    # [γ, β] = W c + b: γ = (1, 2) + (0.5, 0), β = (0, 3) + (0, 1)
    set_linear(film.fc, [[1, 0], [0, 1], [0, 0], [1, 1]], [0.5, 0, 0, 1])
    assert film([c, x], present).tolist() == [[1.5 * 3 + 0, 2 * 4 + 4]]  # γ ⊙ x + β
    assert film([c, torch.zeros_like(x)], present).tolist() == [[0.0, 4.0]]  # x missing: β(c)
    swapped = FUSIONS.build("film", {"condition": 1}, feature_shapes=[(2,), (2,)])
    swapped.load_state_dict(film.state_dict())
    assert swapped([x, c], present).tolist() == film([c, x], present).tolist()  # modality 1 conditions modality 0


def test_gated_hand_computed_and_the_gate_option():
    g, x = torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[1.0, 4.0]])
    present = torch.ones(1, 2, dtype=torch.bool)
    gated = FUSIONS.build("gated", {}, feature_shapes=[(2,), (2,)])
    set_linear(gated.fc_gate, [[1, 0], [0, 1]], [0, 0])  # σ(g) = (0.5, 0.75)
    set_linear(gated.fc_value, [[2, 0], [0, 1]], [1, 0])  # W x + b = (3, 4)
    torch.testing.assert_close(gated([g, x], present), torch.tensor([[1.5, 3.0]]))
    swapped = FUSIONS.build("gated", {"gate": 1}, feature_shapes=[(2,), (2,)])
    swapped.load_state_dict(gated.state_dict())
    torch.testing.assert_close(swapped([x, g], present), torch.tensor([[1.5, 3.0]]))
    wide = FUSIONS.build("gated", {"hidden": 5}, feature_shapes=[(2,), (3,)])
    assert wide([g, torch.ones(1, 3)], present).shape == (1, 5) and wide.out_features == 5


def test_film_and_gated_refuse_other_than_two_vector_modalities():
    from mmrobust.registry import ConfigError

    for name in ("film", "gated"):
        with pytest.raises(ConfigError, match=f"model.fusion: {name} fusion needs two modalities"):
            FUSIONS.build(name, {}, where="model.fusion", feature_shapes=[(2,), (2,), (2,)])
        with pytest.raises(ConfigError, match="needs two modalities with vector features"):
            FUSIONS.build(name, {}, where="model.fusion", feature_shapes=[(2, 3, 3), (2, 3, 3)])


# ------------------------------------------------------------------------------ methods on av_resnet18
METHOD_NAMES = ("arl", "dgl", "ogm_ge", "modality_dropout", "dmrnet")


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["concat", "film", "gated"])  # sum: tests/methods/test_unimodal.py
def test_each_method_trains_one_step_with_each_fusion(fusion, tmp_path: Path):
    """Built as experiment.py builds it: the method declares its model config, the model is built from it,
    then ``prepare``, one step, backward and ``after_backward``. Every fusion is defined for every method:
    the unimodal predictions ARL/DGL/OGM-GE use are the shared stages on the zero-filled other modality
    (methods/unimodal.py); OGM-GE takes the exact head slices only for ``concat``."""
    one_training_step_each(METHOD_NAMES, fusion, tmp_path)


def test_ogm_ge_trains_one_step_with_film(tmp_path: Path):
    """The fast set's case: OGM-GE's per-modality scores without per-modality head slices."""
    one_training_step_each(("ogm_ge",), "film", tmp_path)


def one_training_step_each(names: tuple[str, ...], fusion: str, tmp_path: Path) -> None:
    batch = tiny_batch()
    for name in names:
        context = MethodContext(AV, K, build_model=lambda: None, fit=None, run_dir=tmp_path)  # type: ignore[arg-type]
        method = METHODS.build(name, {}, context=context)
        config = method.model_config(copy.deepcopy(tiny_config(fusion)))
        torch.manual_seed(0)
        model = build_model(config, AV, TINY_SHAPES, K)
        method.prepare(model)
        state = TrainState(epoch=5, step=1)
        step = method(model, batch, state)
        step.loss.backward()
        method.after_backward(model, state)
        assert torch.isfinite(step.loss) and step.output.shape == (4, K), (name, fusion)
        for m in AV:
            grads = [p.grad for p in model.encoders[m].parameters() if p.grad is not None]
            assert grads and all(torch.isfinite(g).all() for g in grads), (name, fusion, m)
        if name == "ogm_ge":
            assert (concat_head(model) is not None) == (fusion == "concat")
