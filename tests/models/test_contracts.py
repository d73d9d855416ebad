"""Contract tests over every registered encoder, fusion, neck and head.

Each registry entry has tiny cases below (a config, the input shape(s) and the expected output shape); a
registered name without a case fails ``test_every_registered_name_has_a_case``, so a new part is tested as
soon as it is registered. Every part is built through its registry and must:

- give the documented output shape;
- keep NaN out of what it must not reach: for fusions, NaN features of an absent modality never reach the
  fused output through ``MultimodalModel.fuse`` (train mode included), and the output equals the one with zeros
  there; encoders, necks and heads keep samples independent in eval mode (NaN in one sample reaches no other
  one), which is what lets the model mask a modality per sample. (In train mode BatchNorm mixes the samples of a
  batch: that is why ``Batch`` carries zeros, never garbage, for absent inputs.)
- pass gradients to every parameter and to its input;
- be deterministic under a seed (same initialization, same output).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from mmrobust.models import ENCODERS, FUSIONS, HEADS, NECKS
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.models.necks import IdentityNeck

B = 4  # samples per batch
K = 3  # classes

# name -> cases (config, input shape, output shape without the batch dimension)
ENCODER_CASES: dict[str, list[tuple[dict[str, Any], tuple[int, ...], tuple[int, ...]]]] = {
    "mlp": [({"hidden": [8], "out_features": 4, "norm": "batch"}, (6,), (4,))],
    "resnet": [
        ({"depth": 18, "width": 4, "last_stage": "layer2"}, (3, 16, 16), (8,)),
        ({"depth": 18, "width": 4, "stem": "cifar", "last_stage": "layer1", "pool": False}, (1, 8, 8), (4, 8, 8)),
    ],
    "seg_cnn": [({"channels": [4, 6], "blocks": 2}, (3, 16, 12), (6, 4, 3))],
    "conv": [({"channels": [4, 6], "blocks": 1}, (2, 8, 8), (6,)), ({"channels": [4], "blocks": 1}, (5, 7), (4,))],
    "spectrogram_cnn": [({"channels": [4, 6], "blocks": 1}, (1, 16, 12), (6,))],
    "audio_resnet": [({"width": 4}, (1, 16, 12), (32,)), ({"width": 4}, (16, 12), (32,))],
    "frames_resnet": [({"width": 4}, (2, 3, 16, 16), (32,)), ({"width": 4, "temporal_pool": "max"}, (1, 8, 8), (32,))],
    "osmd": [
        ({"encoder": {"name": "mlp", "hidden": [], "out_features": 4}, "translator": "ctn"}, (6,), (4,)),
        (
            {"encoder": {"name": "seg_cnn", "channels": [4, 4], "blocks": 1}, "translator": "autoencoder"},
            (2, 8, 8),
            (4, 2, 2),
        ),
    ],
}
# name -> cases (config, per-modality feature shapes, fused shape)
FUSION_CASES: dict[str, list[tuple[dict[str, Any], list[tuple[int, ...]], tuple[int, ...]]]] = {
    "concat": [({}, [(4,), (3,), (2,)], (9,)), ({"keep_maps": True}, [(2, 3, 3), (1, 3, 3)], (3, 3, 3))],
    "concat_mlp": [({"hidden": [5], "out_features": 3, "norm": "batch"}, [(4,), (3,), (2,)], (3,))],
    "sum": [({}, [(4,)] * 3, (4,)), ({}, [(2, 3, 3)] * 2, (2,)), ({"keep_maps": True}, [(2, 3, 3)] * 2, (2, 3, 3))],
    "mean": [({}, [(4,)] * 3, (4,)), ({}, [(2, 3, 3)] * 2, (2,)), ({"keep_maps": True}, [(2, 3, 3)] * 2, (2, 3, 3))],
    "film": [({}, [(4,), (4,)], (4,)), ({"condition": 1}, [(3,), (5,)], (3,))],
    "gated": [({}, [(4,), (4,)], (4,)), ({"gate": 1, "hidden": 6}, [(3,), (5,)], (6,))],
    "concat_trunk": [
        ({"depth": 18, "width": 4}, [(8, 4, 4), (8, 4, 4)], (32,)),
        ({"depth": 18, "width": 4, "pool": False}, [(8, 4, 4), (8, 4, 4)], (32, 1, 1)),
    ],
    "udml": [
        ({"fusion": {"name": "concat"}, "hidden": 4}, [(4,), (3,), (2,)], (9,)),
        ({"fusion": {"name": "concat", "keep_maps": True}, "hidden": 4}, [(2, 3, 3), (1, 3, 3)], (3, 3, 3)),
    ],
}
# name -> cases (config, input shape, output shape)
NECK_CASES: dict[str, list[tuple[dict[str, Any], tuple[int, ...], tuple[int, ...]]]] = {
    "identity": [({}, (6,), (6,)), ({}, (4, 3, 3), (4, 3, 3))],
    "probabilistic": [({}, (6,), (6,)), ({}, (4, 3, 3), (4, 3, 3))],
    "probabilistic_pooled": [({}, (6,), (6,)), ({}, (4, 3, 3), (4,))],
}
HEAD_CASES: dict[str, list[tuple[dict[str, Any], tuple[int, ...], tuple[int, ...]]]] = {
    "linear": [({}, (6,), (K,)), ({"dropout": 0.2}, (4, 3, 3), (K,))],
    "segmentation": [
        ({"scale": 4, "hidden": 4}, (4, 3, 3), (K, 12, 12)),
        ({"scale": 2, "kernel_size": 3, "upsampling": "learned"}, (4, 3, 3), (K, 6, 6)),
    ],
}
REGISTRIES = {"encoder": (ENCODERS, ENCODER_CASES), "fusion": (FUSIONS, FUSION_CASES), "neck": (NECKS, NECK_CASES)}
REGISTRIES["head"] = (HEADS, HEAD_CASES)


def cases(table: dict[str, list[Any]]) -> list[Any]:
    return [
        pytest.param(name, *case, id=f"{name}-{i}") for name, entries in table.items() for i, case in enumerate(entries)
    ]


def build(kind: str, name: str, config: dict[str, Any], shape: Any) -> nn.Module:
    """Build a part through its registry with the arguments the model builder passes."""
    registry = REGISTRIES[kind][0]
    extra: dict[str, Any] = {
        "encoder": {"in_shape": shape},
        "fusion": {"feature_shapes": shape},
        "neck": {"in_features": shape[0] if isinstance(shape, tuple) else 0},
        "head": {"in_features": shape[0] if isinstance(shape, tuple) else 0, "num_classes": K},
    }[kind]
    return registry.build(name, config, where=f"model.{kind}", **extra)


def projection(shape: torch.Size) -> torch.Tensor:
    """A fixed random weight for a scalar loss ``(out · w).sum()`` (a plain sum has no gradient through BatchNorm)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(1))


def assert_gradients_reach(module: nn.Module, *inputs: torch.Tensor) -> None:
    for n, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    assert any(p.grad.abs().sum() > 0 for p in module.parameters() if p.grad is not None) or not list(
        module.parameters()
    )
    for x in inputs:
        assert x.grad is not None and x.grad.abs().sum() > 0


def assert_samples_independent(module: nn.Module, x: torch.Tensor) -> None:
    """Eval mode: NaN in sample 0 changes no other sample's output (a sample can be masked on its own)."""
    module.eval()
    with torch.no_grad():
        clean = module(x)
        poisoned = x.clone()
        poisoned[0] = float("nan")
        out = module(poisoned)
    assert torch.isfinite(out[1:]).all()
    torch.testing.assert_close(out[1:], clean[1:])


def assert_deterministic(kind: str, name: str, config: dict[str, Any], shape: Any, run: Any) -> None:
    outputs, states = [], []
    for _ in range(2):
        torch.manual_seed(0)
        module = build(kind, name, config, shape)
        states.append(module.state_dict())
        torch.manual_seed(1)
        outputs.append(run(module))
    assert states[0].keys() == states[1].keys() and all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("kind", list(REGISTRIES))
def test_every_registered_name_has_a_case(kind):
    registry, table = REGISTRIES[kind]
    missing = sorted(set(registry.names()) - set(table))
    assert not missing, f"registered {kind}s without a contract case in {__file__}: {missing}"
    assert not set(table) - set(registry.names()), "cases for names that are not registered"


# ------------------------------------------------------------------------------------------------- encoders
@pytest.mark.parametrize(("name", "config", "in_shape", "out_shape"), cases(ENCODER_CASES))
def test_encoder_contract(name, config, in_shape, out_shape):
    torch.manual_seed(0)
    encoder = build("encoder", name, config, in_shape).train()
    x = torch.randn(B, *in_shape, requires_grad=True)
    out = encoder(x)
    assert out.shape == (B, *out_shape)
    (out * projection(out.shape)).sum().backward()
    assert_gradients_reach(encoder, x)
    assert_samples_independent(encoder, torch.randn(B, *in_shape))
    assert_deterministic("encoder", name, config, in_shape, lambda e: e.train()(torch.ones(B, *in_shape)))


@pytest.mark.parametrize(("name", "config", "in_shape", "out_shape"), cases(ENCODER_CASES))
def test_nan_in_an_absent_input_does_not_reach_the_logits_in_eval_mode(name, config, in_shape, out_shape):
    """The encoder inside a whole model built from the registries: modality b is absent for sample 0, whose
    b input is NaN; the other samples are unchanged and sample 0's logits are finite."""
    torch.manual_seed(0)
    encoders = nn.ModuleDict({m: build("encoder", name, config, in_shape) for m in "ab"})
    fusion = FUSIONS.build("concat", {}, feature_shapes=[out_shape, out_shape])
    head = HEADS.build("linear", {}, in_features=fusion.out_features, num_classes=K)
    model = MultimodalModel(
        encoders, fusion, IdentityNeck(fusion.out_features), head, ("a", "b"), {"a": out_shape, "b": out_shape}
    ).eval()
    inputs = {m: torch.randn(B, *in_shape) for m in "ab"}
    present = torch.ones(B, 2, dtype=torch.bool)
    present[0, 1] = False
    poisoned = {**inputs, "b": inputs["b"].clone()}
    poisoned["b"][0] = float("nan")
    with torch.no_grad():
        logits = [
            model.head(model.neck(model.fuse({m: model.encoders[m](x[m]) for m in "ab"}, present)))
            for x in (inputs, poisoned)
        ]
    assert torch.isfinite(logits[1]).all()
    torch.testing.assert_close(logits[1], logits[0])


# -------------------------------------------------------------------------------------------------- fusions
def fusion_model(name: str, config: dict[str, Any], shapes: list[tuple[int, ...]]) -> MultimodalModel:
    """A model around the fusion whose encoders are identities (the features are the inputs)."""
    modalities = tuple("abc"[: len(shapes)])
    fusion = build("fusion", name, config, shapes)
    encoders = nn.ModuleDict({m: nn.Identity() for m in modalities})
    return MultimodalModel(encoders, fusion, nn.Identity(), nn.Identity(), modalities, dict(zip(modalities, shapes)))


def mask(num_modalities: int) -> torch.Tensor:
    """Sample 0 lacks the last modality, sample 1 has only it, sample 2 has all, sample 3 has none."""
    present = torch.ones(B, num_modalities, dtype=torch.bool)
    present[0, -1] = False
    present[1, :-1] = False
    present[3] = False
    return present


@pytest.mark.parametrize(("name", "config", "shapes", "out_shape"), cases(FUSION_CASES))
def test_fusion_contract(name, config, shapes, out_shape):
    torch.manual_seed(0)
    model = fusion_model(name, config, shapes).train()
    modalities, present = model.modalities, mask(len(shapes))
    feats = {m: torch.randn(B, *s, requires_grad=True) for m, s in zip(modalities, shapes)}
    fused = model.fuse(feats, present)
    assert fused.shape == (B, *out_shape)
    (fused * projection(fused.shape)).sum().backward()
    assert_gradients_reach(model.fusion, *(feats[m] for m in modalities[:-1]))  # the last is present in 2 samples
    assert feats[modalities[-1]].grad is not None and torch.all(feats[modalities[-1]].grad[[0, 3]] == 0)
    assert_deterministic(
        "fusion",
        name,
        config,
        shapes,
        lambda f: f([torch.ones(B, *s) for s in shapes], torch.ones(B, len(shapes), dtype=torch.bool)),
    )


@pytest.mark.parametrize(("name", "config", "shapes", "out_shape"), cases(FUSION_CASES))
def test_nan_features_of_an_absent_modality_do_not_reach_the_fused_output(name, config, shapes, out_shape):
    torch.manual_seed(0)
    model = fusion_model(name, config, shapes).train()  # train mode: BatchNorm statistics over the batch too
    modalities, present = model.modalities, mask(len(shapes))
    clean = {
        m: torch.where(present[:, j].view(-1, *[1] * len(s)), torch.randn(B, *s), 0.0)
        for j, (m, s) in enumerate(zip(modalities, shapes))
    }
    poisoned = {
        m: torch.where(present[:, j].view(-1, *[1] * (f.dim() - 1)), f, float("nan"))
        for j, (m, f) in enumerate(clean.items())
    }

    def fuse(feats, mask):  # the same random stream for every call (udml samples its embeddings in training)
        torch.manual_seed(0)
        return model.fuse(feats, mask)

    with torch.no_grad():
        expected, out = fuse(clean, present), fuse(poisoned, present)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, expected)
        # a modality missing from the features (its encoder skipped) is fused as zeros and marked absent
        # for every sample, whatever ``present`` says
        skipped = present.clone()
        skipped[:, -1] = False
        partial = {m: clean[m] for m in modalities[:-1]}
        zeros = {**partial, modalities[-1]: torch.zeros(B, *shapes[-1])}
        torch.testing.assert_close(fuse(partial, present), fuse(zeros, skipped))


def test_mean_fusion_averages_the_present_modalities_of_each_sample():
    fusion = FUSIONS.build("mean", {}, feature_shapes=[(2,)] * 3)
    feats = [torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]) * (m + 1) for m in range(3)]  # modality m: (m+1)·x
    present = torch.tensor([[True, True, True], [True, False, True], [False, False, False]])
    # by hand: sample 0 (1+2+3)/3 · [1, 2]; sample 1 (1·[3, 4] + 3·[3, 4]) / 2; sample 2: nothing present -> 0
    expected = torch.tensor([[2.0, 4.0], [6.0, 8.0], [0.0, 0.0]])
    torch.testing.assert_close(fusion(feats, present), expected)
    # through the model: absent features are zeroed first, and the scale does not depend on how many are missing
    model = fusion_model("mean", {}, [(2,)] * 3)
    same = torch.ones(4, 2)
    masks = torch.tensor([[True, True, True], [True, False, False], [False, True, False], [False, True, True]])
    fused = model.fuse({m: same * 7 for m in "abc"}, masks)
    torch.testing.assert_close(fused, torch.full((4, 2), 7.0))
    summed = fusion_model("sum", {}, [(2,)] * 3).fuse({m: same * 7 for m in "abc"}, masks)
    assert summed[:, 0].tolist() == [21.0, 7.0, 7.0, 14.0]  # the sum grows with the number present


def test_mean_fusion_rejects_a_mask_of_the_wrong_shape_and_mixed_feature_shapes():
    fusion = FUSIONS.build("mean", {}, feature_shapes=[(2,)] * 2)
    with pytest.raises(ValueError, match=r"present must be \[B, M\]"):
        fusion([torch.zeros(3, 2)] * 2, torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="one shape"):
        FUSIONS.build("mean", {}, feature_shapes=[(2,), (3,)])


# ------------------------------------------------------------------------------------------ necks and heads
@pytest.mark.parametrize(
    ("kind", "name", "config", "in_shape", "out_shape"),
    [pytest.param("neck", *p.values, id=f"neck-{p.id}") for p in cases(NECK_CASES)]
    + [pytest.param("head", *p.values, id=f"head-{p.id}") for p in cases(HEAD_CASES)],
)
def test_neck_and_head_contract(kind, name, config, in_shape, out_shape):
    torch.manual_seed(0)
    module = build(kind, name, config, in_shape).train()
    x = torch.randn(B, *in_shape, requires_grad=True)
    out = module(x)
    assert out.shape == (B, *out_shape)
    module.eval()
    assert module(x).shape == (B, *out_shape)
    module.train()
    (module(x) * projection(out.shape)).sum().backward()
    assert_gradients_reach(module, x)
    assert_samples_independent(module, torch.randn(B, *in_shape))
    assert_deterministic(kind, name, config, in_shape, lambda n: n.train()(torch.ones(B, *in_shape)))
