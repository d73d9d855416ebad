"""Per-modality missing rates (imbalanced missing rates, as MCE trains with): ``rates`` of the independent policy
and the ``method.rates`` shortcut of modality dropout."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import method_context

from mmrobust.data.missing import IndependentKeep, UniformSubsets
from mmrobust.methods import METHODS
from mmrobust.registry import ConfigError

N = 20000
INDEX = torch.arange(N)
MODALITIES = ("a", "b", "c")


def drop_rates(mask: torch.Tensor) -> torch.Tensor:
    return 1.0 - mask.double().mean(dim=0)


def test_empirical_drop_rate_of_each_modality_follows_the_conditioned_formula():
    rates = {"a": 0.1, "b": 0.5, "c": 0.7}
    mask = IndependentKeep(MODALITIES, rates=rates).draw(INDEX, seed=0, epoch=0)
    assert mask.any(dim=1).all()  # an all-dropped draw is redrawn
    r = torch.tensor([0.1, 0.5, 0.7], dtype=torch.float64)
    none_kept = r.prod()  # 0.035
    expected = (r - none_kept) / (1 - none_kept)  # P(m dropped | not all dropped)
    assert (drop_rates(mask) - expected).abs().max() < 0.012
    # a modality that never drops: the others are dropped at exactly their rates (nothing to redraw)
    exact = IndependentKeep(MODALITIES, rates={"b": 0.5, "c": 0.2}).draw(INDEX, seed=1, epoch=3)
    assert exact[:, 0].all()
    assert (drop_rates(exact) - torch.tensor([0.0, 0.5, 0.2], dtype=torch.float64)).abs().max() < 0.012


def test_a_scalar_rate_draws_exactly_what_keep_one_minus_rate_draws():
    for rate in (0.25, 0.3, 0.0):
        by_rate = IndependentKeep(MODALITIES, rates=rate).draw(INDEX[:3000], seed=5, epoch=2)
        by_keep = IndependentKeep(MODALITIES, keep=1.0 - rate).draw(INDEX[:3000], seed=5, epoch=2)
        assert torch.equal(by_rate, by_keep)
    as_list = IndependentKeep(MODALITIES, rates=[0.1, 0.0, 0.4]).draw(INDEX[:3000], seed=5, epoch=2)
    as_dict = IndependentKeep(MODALITIES, rates={"a": 0.1, "c": 0.4}).draw(INDEX[:3000], seed=5, epoch=2)
    assert torch.equal(as_list, as_dict)


def test_method_rates_shortcut_and_the_unchanged_default():
    ctx = method_context()
    default = METHODS.build("modality_dropout", {}, context=ctx)
    assert isinstance(default.policy, UniformSubsets)  # rates: null keeps today's uniform subsets
    shortcut = METHODS.build("modality_dropout", {"rates": {"a": 0.1, "c": 0.5}}, context=ctx)
    explicit = METHODS.build(
        "modality_dropout", {"distribution": {"name": "independent", "rates": {"a": 0.1, "c": 0.5}}}, context=ctx
    )
    for method in (shortcut, explicit):
        assert method.policy.keep.tolist() == [0.9, 1.0, 0.5]
    assert torch.equal(shortcut.policy.draw(INDEX[:500], 0, 0), explicit.policy.draw(INDEX[:500], 0, 0))
    scalar = METHODS.build("modality_dropout", {"rates": 0.3}, context=ctx)
    keep = METHODS.build("modality_dropout", {"distribution": {"name": "independent", "keep": 0.7}}, context=ctx)
    assert torch.equal(scalar.policy.draw(INDEX[:500], 2, 1), keep.policy.draw(INDEX[:500], 2, 1))


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"rates": {"rgb": 0.1}}, r"method\.rates: unknown modality 'rgb'"),
        ({"rates": 1.0}, r"method\.rates: need missing rates in \[0, 1\)"),
        ({"rates": {"a": -0.1}}, r"method\.rates: need missing rates in \[0, 1\)"),
        ({"rates": [0.1, 0.2]}, r"method\.rates: need one value per modality"),
        ({"rates": 0.1, "distribution": {"name": "independent", "keep": 0.5}}, r"method\.rates replaces"),
        ({"distribution": {"name": "independent", "rates": {"x": 0.5}}}, r"method\.distribution\.rates: unknown"),
        ({"distribution": {"name": "independent", "rates": 0.5, "keep": 0.5}}, r"not both"),
    ],
)
def test_bad_rates_are_one_config_error_line(config, key):
    with pytest.raises(ConfigError, match=key) as error:
        METHODS.build("modality_dropout", config, context=method_context())
    assert "\n" not in str(error.value)
