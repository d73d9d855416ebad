"""Missing-modality policies: counter-based hashing, subset distributions and batch invariance."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from mmrobust.data.missing import (
    SUBSET_POLICIES,
    IndependentKeep,
    UniformSubsets,
    WeightedSubsets,
    hash_uniform,
)
from mmrobust.registry import ConfigError
from mmrobust.subsets import masks_to_subsets

N = 20000
INDEX = torch.arange(N)


def test_hash_uniform_is_deterministic_in_range_and_uniform() -> None:
    u = hash_uniform(3, 7, INDEX)
    assert u.shape == (N,) and u.dtype == torch.float64
    assert torch.equal(u, hash_uniform(3, 7, INDEX))
    assert (u >= 0).all() and (u < 1).all()
    counts = torch.histc(u, bins=10, min=0, max=1)
    assert (counts - N / 10).abs().max() < 0.06 * N / 10
    assert abs(u.mean().item() - 0.5) < 0.01
    # neighbouring indices are not correlated
    assert abs(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1].item()) < 0.03


@pytest.mark.parametrize("change", [{"seed": 4}, {"epoch": 8}, {"stream": 1}])
def test_hash_uniform_depends_on_seed_epoch_and_stream(change: dict) -> None:
    args = {"seed": 3, "epoch": 7, "stream": 0, **change}
    other = hash_uniform(args["seed"], args["epoch"], INDEX[:1000], stream=args["stream"])
    base = hash_uniform(3, 7, INDEX[:1000])
    assert (other != base).float().mean() > 0.99
    assert abs(torch.corrcoef(torch.stack([base, other]))[0, 1].item()) < 0.1


def test_hash_uniform_is_a_function_of_the_index_alone() -> None:
    idx = torch.tensor([5, 123456, 0, 5])
    u = hash_uniform(0, 0, idx)
    assert u[0] == u[3]
    assert torch.equal(u[1:2], hash_uniform(0, 0, torch.tensor([123456])))


def test_uniform_subsets_are_non_empty_and_uniform() -> None:
    policy = UniformSubsets(["a", "b", "c"])
    mask = policy.draw(INDEX, seed=1, epoch=0)
    assert mask.shape == (N, 3) and mask.dtype == torch.bool
    assert mask.any(1).all()
    counts = Counter(masks_to_subsets(mask).tolist())
    assert sorted(counts) == list(range(1, 8))  # all 2^3 - 1 non-empty subsets
    assert max(abs(c - N / 7) for c in counts.values()) < 0.08 * N / 7
    assert not torch.equal(mask, policy.draw(INDEX, seed=1, epoch=1))  # a new epoch draws anew


@pytest.mark.parametrize(
    "policy",
    [
        UniformSubsets(["a", "b", "c"]),
        IndependentKeep(["a", "b", "c"], keep=[0.2, 0.5, 0.3]),
        WeightedSubsets(["a", "b", "c"], ["a", "b+c", "a+b+c"], [1.0, 2.0, 1.0]),
    ],
    ids=["uniform", "independent", "weighted"],
)
def test_draws_do_not_depend_on_the_batch(policy) -> None:
    index = torch.arange(100)
    whole = policy.draw(index, seed=5, epoch=2)
    halves = torch.cat([policy.draw(index[:50], seed=5, epoch=2), policy.draw(index[50:], seed=5, epoch=2)])
    assert torch.equal(whole, halves)
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    assert torch.equal(policy.draw(index[perm], seed=5, epoch=2), whole[perm])
    assert torch.equal(policy.draw(index, seed=5, epoch=2), whole)


def test_independent_keep_matches_probabilities_given_non_empty() -> None:
    keep = [0.2, 0.5]
    mask = IndependentKeep(["a", "b"], keep=keep).draw(INDEX, seed=0, epoch=0)
    assert mask.any(1).all()
    non_empty = 1 - (1 - keep[0]) * (1 - keep[1])  # 0.6
    freq = mask.double().mean(0)
    assert abs(freq[0].item() - keep[0] / non_empty) < 0.015  # 1/3, not 0.2
    assert abs(freq[1].item() - keep[1] / non_empty) < 0.015  # 5/6, not 0.5
    both = (mask[:, 0] & mask[:, 1]).double().mean().item()
    assert abs(both - keep[0] * keep[1] / non_empty) < 0.015


def test_independent_keep_one_always_keeps() -> None:
    mask = IndependentKeep(["a", "b", "c"], keep=[1.0, 0.5, 0.5]).draw(INDEX[:2000], seed=0, epoch=0)
    assert mask[:, 0].all()
    assert 0.45 < mask[:, 1].double().mean().item() < 0.55


def test_weighted_subsets_respect_weights() -> None:
    policy = WeightedSubsets(["a", "b"], ["a", "a+b", "b"], [1.0, 0.0, 3.0])
    subsets = masks_to_subsets(policy.draw(INDEX, seed=2, epoch=0))
    assert (subsets != 0b11).all()  # zero weight: never drawn
    assert abs((subsets == 0b01).double().mean().item() - 0.25) < 0.015
    assert abs((subsets == 0b10).double().mean().item() - 0.75) < 0.015


def test_weighted_subsets_default_to_uniform_over_the_list() -> None:
    policy = WeightedSubsets(["rgb", "depth", "ir"], ["rgb+depth", "ir"])
    subsets = masks_to_subsets(policy.draw(INDEX, seed=0, epoch=0))
    assert set(subsets.tolist()) == {0b011, 0b100}
    assert abs((subsets == 0b100).double().mean().item() - 0.5) < 0.015


def test_policies_build_from_the_registry() -> None:
    policy = SUBSET_POLICIES.build("independent", {"keep": 0.7}, modalities=("a", "b"))
    assert isinstance(policy, IndependentKeep) and policy.keep.tolist() == [0.7, 0.7]
    with pytest.raises(ConfigError, match=r"independent.*uniform.*weighted"):
        SUBSET_POLICIES.build("bernoulli", {}, modalities=("a", "b"))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: IndependentKeep(["a", "b"], keep=[0.5]), "keep"),
        (lambda: IndependentKeep(["a", "b"], keep=[0.0, 0.5]), "keep"),
        (lambda: IndependentKeep(["a", "b"], keep=1.5), "keep"),
        (lambda: WeightedSubsets(["a", "b"], ["a", "b"], [1.0]), "weights"),
        (lambda: WeightedSubsets(["a", "b"], ["a", "b"], [-1.0, 2.0]), "weights"),
        (lambda: WeightedSubsets(["a", "b"], ["a", "b"], [0.0, 0.0]), "weights"),
        (lambda: WeightedSubsets(["a", "b"], ["a+x"]), r"subsets.*'x'"),
        (
            lambda: SUBSET_POLICIES.build("weighted", {"subsets": ["a"], "weight": [1.0]}, modalities=("a",)),
            "weight",
        ),
    ],
)
def test_bad_configs_are_config_errors(make, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()
