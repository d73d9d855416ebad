"""The CASIA-SURF baseline (``model=surf_baseline``) is the authors' network: same stem, shapes and size.

Reference: the MMANet/DMRNet code, ``classification/models/resnet18_se.py`` (the ResNet-18-SE trunk) and
``classification/models/surf_baseline.py`` (``SURF_Baseline``: per modality conv1 → bn1 → relu → maxpool →
layer1 → layer2 → se_layer; concatenation; shared layer3_new (384 input channels) → layer4 → avgpool → fc).
"""

from importlib import resources

import pytest
import torch
import yaml
from torch import nn

from mmrobust.models import build_model

MODALITIES = ("rgb", "depth", "ir")


@pytest.fixture(scope="module")
def surf():
    return surf_model()


def surf_model(num_classes: int = 2):
    config = yaml.safe_load(resources.files("mmrobust.configs.model").joinpath("surf_baseline.yaml").read_text())
    torch.manual_seed(0)
    return build_model(config, MODALITIES, {m: (3, 112, 112) for m in MODALITIES}, num_classes)


def authors_parameter_count() -> int:
    """Parameters of the authors' ``SURF_Baseline`` (class_num 2, se_reduction 16, inplace_new 384), counted
    layer by layer from their architecture (bias-free convs, BN weight + bias, SE = Linear(128, 8) → ReLU →
    Linear(8, 128) with biases, fc = Linear(512, 2)). The three per-modality branches are registered
    modules; the unused layer3_new/layer4/fc of branches 2 and 3 are not (their ResNet objects are locals)."""

    def conv(cin, cout, k):
        return cin * cout * k * k

    def bn(c):
        return 2 * c

    def block(cin, cout, stride):
        shortcut = conv(cin, cout, 1) + bn(cout) if stride != 1 or cin != cout else 0
        return conv(cin, cout, 3) + bn(cout) + conv(cout, cout, 3) + bn(cout) + shortcut

    stem = conv(3, 64, 3) + bn(64)  # 1,856
    layer1 = 2 * block(64, 64, 1)  # 147,968
    layer2 = block(64, 128, 2) + block(128, 128, 1)  # 525,568
    se = (128 * 8 + 8) + (8 * 128 + 128)  # 2,184
    branch = stem + layer1 + layer2 + se  # 677,576 per modality
    layer3_new = block(384, 256, 2) + block(256, 256, 1)  # 2,755,072
    layer4 = block(256, 512, 2) + block(512, 512, 1)  # 8,393,728
    fc = 512 * 2 + 2
    return 3 * branch + layer3_new + layer4 + fc


def test_authors_parameter_count_is_what_we_counted():
    assert authors_parameter_count() == 13_182_554


def test_surf_baseline_has_the_authors_parameter_count(surf):
    assert sum(p.numel() for p in surf.parameters()) == authors_parameter_count()


def test_surf_stem_is_conv3x3_s2_bn_relu_maxpool(surf):
    backbone = surf.encoders["rgb"].backbone
    conv, pool = backbone.conv1, backbone.maxpool
    assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (2, 2), (1, 1))
    assert isinstance(pool, nn.MaxPool2d) and (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
    assert isinstance(backbone.bn1, nn.BatchNorm2d) and isinstance(backbone.relu, nn.ReLU)


def test_surf_baseline_shapes_at_112_px(surf):
    model = surf.eval()
    assert all(model.feature_shapes[m] == (128, 14, 14) for m in MODALITIES)  # 112 → 56 → 28 → 28 → 14
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        features = {m: model.encoders[m](x) for m in MODALITIES}
        fused = model.fuse(features, torch.ones(2, 3, dtype=torch.bool))
        logits = model.head(model.neck(fused))
    assert features["rgb"].shape == (2, 128, 14, 14)
    assert fused.shape == (2, 512, 4, 4)  # shared layer3 (14 → 7) and layer4 (7 → 4) on 384 channels
    assert logits.shape == (2, 2)
