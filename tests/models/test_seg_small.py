"""The small late-fusion segmentation model (seg_cnn encoders, map concatenation, segmentation head) and
its parts: shapes, availability, gradients, upsampling and pyramid pooling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from mmrobust.batch import Batch
from mmrobust.models import ENCODERS, FUSIONS, HEADS, build_model
from mmrobust.models.context import PyramidPooling
from mmrobust.models.upsampling import Upsample
from mmrobust.registry import ConfigError
from tests.models.seg_batches import MODS, SHAPES, random_seg_batch

CONFIG = Path(__file__).resolve().parents[2] / "src/mmrobust/configs/model/seg_small.yaml"
K = 4


def make_model():
    torch.manual_seed(0)
    return build_model(yaml.safe_load(CONFIG.read_text()), MODS, SHAPES, K)


def make_batch(present: list[list[bool]]) -> Batch:
    return random_seg_batch(present, K)


def test_shipped_config_builds_and_outputs_logits_at_input_resolution():
    model = make_model().eval()
    batch = make_batch([[True, True], [False, True]])
    with torch.no_grad():
        fused = model.fuse(model.encode(batch), batch.present)
        logits = model(batch)
    assert model.feature_shapes == {"rgb": (32, 16, 16), "depth": (32, 16, 16)}
    assert fused.shape == (2, 64, 16, 16) and logits.shape == (2, K, 64, 64)
    assert not model.fusion_inside_encoders


def test_absent_modality_input_does_not_change_the_sample_and_encode_once_equals_restricted_forward():
    model = make_model().eval()
    batch = make_batch([[True, True], [True, False]])
    inputs = {m: v.clone() for m, v in batch.inputs.items()}
    inputs["depth"][:] = 5.0  # absent for sample 1, present for sample 0
    with torch.no_grad():
        a, b = model(batch), model(Batch(inputs, batch.present, batch.target, MODS))
        feats = model.encode(batch)
        only_rgb = torch.tensor([[True, False], [True, False]])
        c = model.head(model.neck(model.fuse(feats, only_rgb)))
        d = model(batch.with_present(only_rgb))
    assert torch.equal(a[1], b[1]) and not torch.equal(a[0], b[0])
    torch.testing.assert_close(c, d)


def test_gradients_reach_both_encoders():
    model = make_model().train()
    batch = make_batch([[True, True], [True, True]])
    F.cross_entropy(model(batch), batch.target).backward()
    for m in MODS:
        grads = [p.grad for p in model.encoders[m].parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), m


def test_sum_fusion_keeps_maps_and_concat_keeps_channels():
    shapes = [(8, 4, 4), (8, 4, 4)]
    feats = [torch.randn(2, *s) for s in shapes]
    present = torch.ones(2, 2, dtype=torch.bool)
    summed = FUSIONS.build("sum", {"keep_maps": True}, feature_shapes=shapes)
    concat = FUSIONS.build("concat", {"keep_maps": True}, feature_shapes=shapes)
    assert torch.equal(summed(feats, present), feats[0] + feats[1]) and summed.out_features == 8
    assert torch.equal(concat(feats, present), torch.cat(feats, 1)) and concat.out_features == 16
    # the classification defaults are unchanged: flattened concatenation, pooled sum
    assert FUSIONS.build("concat", {}, feature_shapes=shapes)(feats, present).shape == (2, 256)
    assert FUSIONS.build("sum", {}, feature_shapes=shapes)(feats, present).shape == (2, 8)
    with pytest.raises(ValueError, match="one size"):
        FUSIONS.build("concat", {"keep_maps": True}, feature_shapes=[(8, 4, 4), (8, 2, 2)])


def test_seg_cnn_encoder_has_output_stride_4():
    enc = ENCODERS.build("seg_cnn", {"channels": [4, 6], "blocks": 1}, in_shape=(1, 24, 40))
    assert enc(torch.randn(2, 1, 24, 40)).shape == (2, 6, 6, 10)
    with pytest.raises(ConfigError, match=r"model.encoder.channels: expected"):
        ENCODERS.build("seg_cnn", {"channels": 8}, where="model.encoder", in_shape=(1, 24, 40))


@pytest.mark.parametrize(("upsampling", "hidden"), [("bilinear", 0), ("nearest", 6), ("learned", 0)])
def test_segmentation_head_shapes(upsampling, hidden):
    head = HEADS.build(
        "segmentation",
        {"scale": 4, "hidden": hidden, "kernel_size": 3, "upsampling": upsampling},
        in_features=5,
        num_classes=3,
    )
    assert head(torch.randn(2, 5, 6, 8)).shape == (2, 3, 24, 32)
    with pytest.raises(ValueError, match=r"\[B, C, h, w\]"):
        head(torch.randn(2, 5))


def test_segmentation_head_rejects_bad_options():
    with pytest.raises(ValueError, match="power of 2"):
        HEADS.build("segmentation", {"scale": 3, "upsampling": "learned"}, in_features=4, num_classes=2)
    with pytest.raises(ConfigError, match=r"head.upsampling: expected"):
        HEADS.build("segmentation", {"upsampling": "cubic"}, in_features=4, num_classes=2)


def test_learned_upsampling_starts_close_to_bilinear():
    up = Upsample("learned", channels=2)
    const = torch.full((1, 2, 3, 5), 1.5)
    assert torch.allclose(up(const), torch.full((1, 2, 6, 10), 1.5))  # the kernel sums to one
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 2, 8, 8)
    bilinear = F.interpolate(ramp, scale_factor=2, mode="bilinear", align_corners=False)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    torch.testing.assert_close(up(ramp)[inner], bilinear[inner], atol=0.13, rtol=0)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (15, 20)])
def test_pyramid_pooling_works_on_small_maps(size):
    ppm = PyramidPooling(16, 8, bins=(1, 5)).eval()
    assert ppm(torch.randn(2, 16, *size)).shape == (2, 8, *size)
