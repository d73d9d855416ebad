"""The thread policy (engine.threads): a pure decision from cores, load, model size, processes and environment."""

from __future__ import annotations

import pytest
import torch

from mmrobust.engine.threads import FLOPS_PER_THREAD, apply_threads, choose_threads, step_flops, torch_user_set

SMALL, BIG = 5e6, 200e9  # an MLP over UCI features; a ResNet-18 step on 3 modalities at 112 px


def test_small_model_gets_one_thread_even_on_an_idle_machine() -> None:
    choice = choose_threads("auto", cores=16, load=0.0, step_flops=SMALL)
    assert choice.threads == 1
    assert "16 cores" in choice.reason and "GFLOP per step" in choice.reason


def test_big_model_gets_every_free_core() -> None:
    assert choose_threads("auto", cores=8, load=0.5, step_flops=BIG).threads == 8
    assert choose_threads("auto", cores=8, load=1.0, step_flops=None).threads == 8  # unknown size: counted as big


def test_load_of_other_processes_takes_cores_away() -> None:
    # load 1 is this process itself; 3.6 → 2.6 other runnable processes → 8 − 2.6 ≈ 5 free
    assert choose_threads("auto", cores=8, load=3.6, step_flops=BIG).threads == 5
    assert choose_threads("auto", cores=2, load=9.0, step_flops=BIG).threads == 1  # never below 1


def test_medium_model_gets_one_thread_per_gflop() -> None:
    assert choose_threads("auto", cores=8, load=0.0, step_flops=3.5 * FLOPS_PER_THREAD).threads == 3


@pytest.mark.parametrize(("processes", "workers", "expected"), [(1, 2, 6), (2, 0, 4), (2, 3, 1), (4, 4, 1)])
def test_processes_and_workers_never_oversubscribe(processes: int, workers: int, expected: int) -> None:
    cores = 8
    choice = choose_threads("auto", cores=cores, load=0.0, step_flops=BIG, processes=processes, workers=workers)
    assert choice.threads == expected
    assert processes * (expected + workers) <= cores or expected == 1


def test_the_users_setting_wins() -> None:
    choice = choose_threads("auto", cores=8, load=0.0, step_flops=SMALL, env={"OMP_NUM_THREADS": "4"})
    assert choice.threads is None and "OMP_NUM_THREADS=4" in choice.reason
    assert choose_threads("auto", cores=8, load=0.0, step_flops=BIG, user_set=True).threads is None
    assert choose_threads(3, cores=8, load=7.0, step_flops=SMALL, env={"OMP_NUM_THREADS": "4"}).threads == 3
    assert choose_threads("2", cores=1, load=0.0, step_flops=SMALL).threads == 2


@pytest.mark.parametrize("bad", [0, "many"])
def test_bad_setting_names_the_key(bad: object) -> None:
    with pytest.raises(ValueError, match="trainer.threads: expected 'auto' or an integer >= 1"):
        choose_threads(bad, cores=2, load=0.0, step_flops=SMALL)  # type: ignore[arg-type]


def test_applied_count_is_not_mistaken_for_the_users() -> None:
    before = torch.get_num_threads()
    try:
        apply_threads(choose_threads(1, cores=2, load=0.0, step_flops=SMALL))
        assert torch.get_num_threads() == 1 and not torch_user_set()
    finally:
        torch.set_num_threads(before)


def test_step_flops_counts_three_forwards_of_the_batch() -> None:
    model = torch.nn.Linear(10, 4)
    flops = step_flops(model, torch.zeros(2, 10), batch_size=64)
    assert flops == pytest.approx(3 * 2 * 10 * 4 * 64)
    assert model.training  # the mode is restored
    assert step_flops(model, torch.zeros(2, 11), batch_size=64) is None  # a model that cannot run: unknown


def test_a_resumed_auto_run_keeps_the_thread_count_it_was_trained_with(tmp_path) -> None:
    from types import SimpleNamespace

    from mmrobust.engine.threads import ThreadChoice
    from mmrobust.engine.trainer import Trainer

    before = torch.get_num_threads()
    try:
        trainer = SimpleNamespace(cfg=SimpleNamespace(threads="auto"), threads=ThreadChoice(1, "auto: small"))
        Trainer.keep_threads_of(trainer, {"threads": 2}, tmp_path / "last.ckpt")  # type: ignore[arg-type]
        assert torch.get_num_threads() == 2 and trainer.threads.threads == 2  # the recorded count, not today's
        torch.set_num_threads(1)
        for kept in (
            SimpleNamespace(cfg=SimpleNamespace(threads=1), threads=ThreadChoice(1, "trainer.threads=1")),  # given
            SimpleNamespace(cfg=SimpleNamespace(threads="auto"), threads=ThreadChoice(None, "OMP_NUM_THREADS=1")),
        ):
            Trainer.keep_threads_of(kept, {"threads": 2}, tmp_path / "last.ckpt")  # type: ignore[arg-type]
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
