"""DMRNet's probabilistic necks: μ / log σ² estimation, reparameterization, deterministic inference."""

import pytest
import torch
from torch import nn

from mmrobust.models import NECKS
from mmrobust.models.necks import PooledProbabilisticNeck, ProbabilisticNeck
from tests.conftest import MLP, SURF_TINY, batch_of, tiny_dataset, tiny_model

SURF_MAP = {**SURF_TINY, "fusion": {**SURF_TINY["fusion"], "pool": False}}


def reference_vector_branch(conv_bn: nn.Sequential) -> nn.Sequential:
    """Linear + BatchNorm1d with the weights of a 1×1 conv + BatchNorm2d branch."""
    conv, bn = conv_bn
    linear, bn1d = nn.Linear(conv.in_channels, conv.out_channels), nn.BatchNorm1d(bn.num_features)
    linear.weight.data.copy_(conv.weight.data[:, :, 0, 0])
    linear.bias.data.copy_(conv.bias.data)
    bn1d.load_state_dict(bn.state_dict())
    return nn.Sequential(linear, bn1d)


def test_vector_input_is_linear_plus_batchnorm1d_in_train_and_eval_mode():
    torch.manual_seed(0)
    neck = ProbabilisticNeck(6)
    nn.init.normal_(neck.mu[1].weight)
    nn.init.normal_(neck.logvar[1].bias)
    mu_ref, logvar_ref = reference_vector_branch(neck.mu), reference_vector_branch(neck.logvar)
    x = torch.randn(16, 6)
    for _ in range(2):  # train mode (batch statistics, running stats updated), then eval mode
        mu, logvar = neck.distribution(x)
        torch.testing.assert_close(mu, mu_ref(x))
        torch.testing.assert_close(logvar, logvar_ref(x))
        torch.testing.assert_close(neck.mu[1].running_mean, mu_ref[1].running_mean)
        neck.eval(), mu_ref.eval(), logvar_ref.eval()


def test_map_input_keeps_its_shape_and_pooled_variant_estimates_the_pooled_vector():
    torch.manual_seed(0)
    x = torch.randn(4, 6, 3, 3)
    neck = ProbabilisticNeck(6)
    mu, logvar = neck.distribution(x)
    assert mu.shape == logvar.shape == (4, 6, 3, 3)
    torch.testing.assert_close(mu, neck.mu(x))  # per position: 1×1 conv + BatchNorm2d
    pooled = PooledProbabilisticNeck(6)
    pooled.load_state_dict(neck.state_dict())
    pmu, plogvar = pooled.distribution(x)
    assert pmu.shape == plogvar.shape == (4, 6)
    vec_mu, vec_logvar = neck.distribution(x.mean(dim=(2, 3)))
    torch.testing.assert_close(pmu, vec_mu)
    torch.testing.assert_close(plogvar, vec_logvar)
    with pytest.raises(ValueError, match=r"\[B, D\] or \[B, C, H, W\]"):
        neck(torch.zeros(2, 6, 3))


def test_reparameterization_gradients_flow_to_mu_and_logvar():
    torch.manual_seed(0)
    mu = torch.randn(5, 4, requires_grad=True)
    logvar = torch.randn(5, 4, requires_grad=True)
    torch.manual_seed(1)
    s = ProbabilisticNeck.sample(mu, logvar)
    torch.manual_seed(1)
    eps = torch.randn(5, 4)
    torch.testing.assert_close(s, mu + eps * torch.exp(0.5 * logvar))
    s.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(5, 4))
    torch.testing.assert_close(logvar.grad, 0.5 * eps * torch.exp(0.5 * logvar))
    # through the neck's parameters: both branches get gradients from the head's loss
    neck = ProbabilisticNeck(4)
    neck(torch.randn(8, 4)).square().sum().backward()
    for branch in (neck.mu, neck.logvar):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in branch.parameters())


@pytest.mark.parametrize(
    ("config", "neck"), [(MLP, "probabilistic"), (SURF_MAP, "probabilistic"), (SURF_MAP, "probabilistic_pooled")]
)
def test_eval_output_is_head_of_mu_and_deterministic_while_training_samples(config, neck):
    image = config is SURF_MAP
    ds = tiny_dataset(image_size=32 if image else 0, num_classes=3)
    model = tiny_model(ds, {**config, "neck": {"name": neck}})
    batch = batch_of(ds, 8)
    fused = model.fuse(model.encode(batch), batch.present)
    assert fused.dim() == (4 if image else 2)
    model.train()
    assert not torch.equal(model(batch), model(batch))  # training sees samples s = μ + εσ
    model.eval()
    with torch.no_grad():
        mu, _ = model.neck_module.distribution(model.fuse(model.encode(batch), batch.present))
        logits = model(batch)
        torch.testing.assert_close(logits, model.head(mu))
        assert torch.equal(logits, model(batch))
    assert mu.dim() == (4 if image and neck == "probabilistic" else 2)


def test_registered_names():
    assert isinstance(NECKS.build("probabilistic", {}, in_features=3), ProbabilisticNeck)
    assert isinstance(NECKS.build("probabilistic_pooled", {}, in_features=3), PooledProbabilisticNeck)
