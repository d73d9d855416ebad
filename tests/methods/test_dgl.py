"""DGL in one backward pass gives the gradients of the reference code's two passes."""

import pytest
import torch
import torch.nn.functional as F

from mmrobust.methods import TrainState
from mmrobust.methods.dgl import DGL
from mmrobust.methods.unimodal import unimodal_logits
from tests.conftest import MLP, batch_of, method_context, tiny_dataset, tiny_model

ENCODER = {"name": "mlp", "hidden": [16], "out_features": 8}
MODELS = {
    "concat_mlp": MLP,
    "concat": {"encoder": ENCODER, "fusion": {"name": "concat"}},
    "sum": {"encoder": ENCODER, "fusion": {"name": "sum"}},
    "concat_mlp_batchnorm": {
        "encoder": ENCODER,
        "fusion": {"name": "concat_mlp", "hidden": [10], "out_features": 12, "norm": "batch"},
    },
}


def two_pass_reference(model, batch, alpha):
    """The reference code: backward of α·Σ CE(p_m), delete the fusion/head gradients, backward of the
    fused loss on detached features."""
    features = model.encode(batch)
    unimodal = unimodal_logits(model, features, batch.present)
    (alpha * sum(F.cross_entropy(p, batch.target) for p in unimodal.values())).backward(retain_graph=True)
    for module in (model.fusion, model.neck_module, model.head_module):
        for p in module.parameters():
            p.grad = None
    fused = model.head(model.neck(model.fuse({m: z.detach() for m, z in features.items()}, batch.present)))
    F.cross_entropy(fused, batch.target).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", list(MODELS))
def test_one_backward_pass_equals_the_reference_two_passes(name):
    ds = tiny_dataset()
    batch = batch_of(ds, 24)
    reference = two_pass_reference(tiny_model(ds, MODELS[name]), batch, alpha=3.0)
    model = tiny_model(ds, MODELS[name])
    DGL(method_context(), alpha=3.0)(model, batch, TrainState()).loss.backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, reference[n], rtol=0, atol=1e-6, msg=n)


def test_alpha_scales_the_encoder_gradients_only():
    ds = tiny_dataset()
    batch = batch_of(ds, 16)
    out = {}
    for alpha in (1.0, 4.0):
        model = tiny_model(ds)
        DGL(method_context(), alpha=alpha)(model, batch, TrainState()).loss.backward()
        out[alpha] = {n: p.grad for n, p in model.named_parameters()}
    for n, g in out[1.0].items():
        factor = 4.0 if n.startswith("encoders.") else 1.0
        torch.testing.assert_close(out[4.0][n], factor * g, rtol=1e-5, atol=1e-7, msg=n)


def test_fused_output_is_the_model_prediction():
    ds = tiny_dataset(missing_rate=0.3)
    model = tiny_model(ds)
    batch = batch_of(ds, 16)
    step = DGL(method_context())(model, batch, TrainState())
    torch.testing.assert_close(step.output, model(batch))
    assert set(step.terms) == {"ce_fused", "ce_a", "ce_b", "ce_c"}
