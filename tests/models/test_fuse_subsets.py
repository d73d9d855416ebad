"""fuse_subsets: every subset of one batch fused in one call equals fusing each subset on its own (eval mode)."""

import pytest
import torch
from torch import nn

from mmrobust.models import FUSIONS
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.subsets import all_subsets, subset_mask

SHAPES = [(4,), (2, 3), (5,), (3,)]  # one matrix-shaped feature: the concatenation flattens it


def _features(batch: int, shapes, absent: torch.Tensor) -> list[torch.Tensor]:
    """Random features with NaN on every absent row (``absent [B, M]``): selecting must drop them, not multiply."""
    feats = []
    for j, shape in enumerate(shapes):
        f = torch.randn(batch, *shape)
        f[absent[:, j]] = float("nan")
        feats.append(f)
    return feats


def _subset_masks(num_modalities: int) -> torch.Tensor:
    return torch.stack([subset_mask(s, num_modalities) for s in all_subsets(num_modalities)])  # [S, M]


def _concat_mlp(hidden: list[int], norm: str, shapes=SHAPES) -> nn.Module:
    torch.manual_seed(0)
    fusion = FUSIONS.build("concat_mlp", {"hidden": hidden, "out_features": 6, "norm": norm}, feature_shapes=shapes)
    for module in fusion.modules():
        if isinstance(module, nn.BatchNorm1d):  # running statistics far from (0, 1), so normalizing matters
            module.running_mean.uniform_(-1.0, 1.0)
            module.running_var.uniform_(0.5, 2.0)
    return fusion.eval()


@pytest.mark.parametrize("hidden", [[], [5]])
@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_concat_mlp_fuse_subsets_equals_fusing_each_mask(hidden, norm):
    fusion = _concat_mlp(hidden, norm)
    torch.manual_seed(1)
    present = torch.rand(5, len(SHAPES)) < 0.6
    present[0] = True  # one complete sample
    feats = _features(5, SHAPES, ~present)
    masks = present.unsqueeze(0) & _subset_masks(len(SHAPES)).unsqueeze(1)  # [S, B, M]
    with torch.no_grad():
        shared = fusion.fuse_subsets(feats, masks)
        each = [
            fusion([torch.where(k.view(-1, *[1] * (f.dim() - 1)), f, 0.0) for f, k in zip(feats, mask.T)], mask)
            for mask in masks
        ]  # fmt: skip
    assert shared.shape == (len(masks) * 5, 6)
    assert not shared.isnan().any()  # the NaN features of absent rows did not leak
    torch.testing.assert_close(shared, torch.cat(each), rtol=1e-5, atol=1e-5)


def test_concat_mlp_fuse_subsets_rejects_masks_of_another_shape():
    fusion = _concat_mlp([], "layer")
    feats = [torch.zeros(3, *s) for s in SHAPES]
    with pytest.raises(ValueError, match=r"masks \[S, B, M\] = \(2, 3, 3\)"):
        fusion.fuse_subsets(feats, torch.ones(2, 3, 3, dtype=torch.bool))


def _model(fusion_name: str, options: dict) -> MultimodalModel:
    modalities = ("a", "b", "c", "d")
    shapes = {"a": (4,), "b": (4,), "c": (4,), "d": (4,)}
    torch.manual_seed(0)
    fusion = FUSIONS.build(fusion_name, options, feature_shapes=list(shapes.values()))
    encoders = nn.ModuleDict({m: nn.Identity() for m in modalities})  # fuse_subsets takes features: not used
    return MultimodalModel(
        encoders, fusion, nn.Identity(), nn.Linear(fusion.out_features, 3), modalities, shapes
    ).eval()


@pytest.mark.parametrize(
    "fusion_name, options",
    [("concat_mlp", {"hidden": [], "out_features": 6, "norm": "layer"}),  # shared first layer
     ("concat_mlp", {"hidden": [5], "out_features": 6, "norm": "batch", "dropout": 0.5}),
     ("mean", {})],  # no fuse_subsets: features repeated, one fuse call
)  # fmt: skip
def test_model_fuse_subsets_equals_fuse_per_subset(fusion_name, options):
    model = _model(fusion_name, options)
    torch.manual_seed(2)
    present = torch.rand(6, 4) < 0.6
    present[:, 2] = False  # "c" absent from the whole batch: its encoder was skipped, no features
    present[0, [0, 1, 3]] = True
    feats = _features(6, [(4,)] * 4, ~present)
    features = {m: f for m, f in zip(model.modalities, feats) if m != "c"}
    subset_masks = _subset_masks(4)
    with torch.no_grad():
        shared = model.fuse_subsets(features, present, subset_masks)
        each = torch.cat([model.fuse(features, present & k) for k in subset_masks])
    assert shared.shape == (15 * 6, model.fusion.out_features)
    assert not shared.isnan().any()
    torch.testing.assert_close(shared, each, rtol=1e-5, atol=1e-5)
    only_c = subset_masks.tolist().index([False, False, True, False])
    other = _model(fusion_name, options)  # the rows of subset {c} are the fusion of nothing, whatever the features
    with torch.no_grad():
        nothing = other.fuse({}, torch.zeros(6, 4, dtype=torch.bool))
    torch.testing.assert_close(shared[only_c * 6 : (only_c + 1) * 6], nothing, rtol=1e-5, atol=1e-5)
