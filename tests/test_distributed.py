"""``mmrobust.distributed``: identity in one process; with 2 gloo processes, the collectives are right and the
batch-relational losses (MAD, SP, MMD, RKD), gathered by their methods, give N=2 the loss and the averaged
gradient of N=1 on the same global batch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from mmrobust import distributed as D
from mmrobust.batch import Batch
from mmrobust.methods import MethodContext, TrainState
from mmrobust.methods.base import frozen
from mmrobust.methods.distillation import RelationKD
from mmrobust.methods.mmanet import MMANet
from mmrobust.methods.osmd import OSMD
from tests.conftest import MLP, batch_of, tiny_dataset, tiny_model

WORLD = 2
GLOBAL_BATCH = 24
# case -> the loss term that compares samples with each other
CASES = {"mad": "mad", "sp": "mad", "mmd": "mmd", "rkd_osmd": "rkd", "rkd_kd": "kd"}


# ------------------------------------------------------------------------------------- one process
def test_every_collective_is_the_identity_without_a_process_group():
    x = torch.randn(3, 2, requires_grad=True)
    assert D.world_size() == 1 and D.rank() == 0 and D.is_main_process() and not D.is_distributed()
    assert D.all_gather_with_grad(x) is x and D.gather_concat(x) is x
    for op in ("sum", "mean", "min", "max"):
        assert D.all_reduce(x, op) is x
    assert D.all_reduce_sum(x) is x and D.all_reduce_mean(x) is x and D.broadcast_(x) is x
    module = nn.BatchNorm1d(2)
    module.running_mean.fill_(3.0)
    D.average_buffers(module)
    D.broadcast_parameters(module)
    D.sync_gradients(module.parameters())
    assert torch.equal(module.running_mean, torch.full((2,), 3.0)) and module.weight.grad is None
    with pytest.raises(ValueError, match="op must be sum, mean, min or max"):
        D.all_reduce(x, "prod")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ the cases
def rows(batch: Batch, part: slice) -> Batch:
    """The samples ``part`` of a batch (one process's shard of the global batch)."""
    return replace(
        batch,
        inputs={m: x[part] for m, x in batch.inputs.items()},
        present=batch.present[part],
        target=batch.target[part],
        index=batch.index[part],
    )


def global_batch() -> Batch:
    """Complete data, except that modality c is absent from the second half: in the OS-MD cases (ordinary a
    and c) rank 1 has no c at all, so the gather takes 12 rows from rank 0 and none from rank 1."""
    batch = batch_of(tiny_dataset(), GLOBAL_BATCH)
    present = batch.present.clone()
    present[GLOBAL_BATCH // 2 :, 2] = False
    return batch.with_present(present)


def build(case: str, folder: Path) -> tuple[nn.Module, nn.Module]:
    """The model and the method of one case, initialized identically in every process."""
    ds = tiny_dataset()
    context = MethodContext(ds.modalities, ds.num_classes, lambda: tiny_model(ds), fit=None, run_dir=folder)  # type: ignore[arg-type]
    model = tiny_model(ds)  # seeds itself
    teacher = frozen(build_model_with_seed(ds, 1))
    method: nn.Module
    if case in ("mad", "sp"):
        method = MMANet(
            context, alpha=1.0, beta=0.0, begin_epoch=0, weighting="entropy" if case == "mad" else "uniform"
        )
        method.teacher = teacher
    elif case == "rkd_kd":
        method = RelationKD(context)
        method.teacher = teacher
    else:
        method = OSMD(
            context,
            ordinary=["a", "c"],
            privileged=["b"],
            transfer="jdn" if case == "mmd" else "relation",
            translator="concat",
            balancing="fixed",
            alpha=1.0,
            ordinary_checkpoint=str(folder / "ordinary.ckpt"),
            privileged_checkpoint=str(folder / "privileged.ckpt"),
        )
        model = tiny_model(ds, method.model_config(MLP))  # the osmd encoders it declares; seeds itself
        torch.manual_seed(2)
        method.prepare(model)
    return model, method


def build_model_with_seed(ds, seed: int) -> nn.Module:
    model = tiny_model(ds)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator))
    return model


def save_pretrained(folder: Path) -> None:
    ds = tiny_dataset()
    for name, seed in (("ordinary", 3), ("privileged", 4)):
        torch.save({"model": build_model_with_seed(ds, seed).state_dict()}, folder / f"{name}.ckpt")


def run_case(case: str, batch: Batch, folder: Path) -> dict[str, torch.Tensor]:
    """One training step's loss, relational term and (process-averaged) gradients of every trainable tensor."""
    model, method = build(case, folder)
    step = method(model, batch, TrainState(seed=0, epoch=0))
    step.loss.backward()
    params = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
    D.sync_gradients(params)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    return {
        "loss": step.loss.detach(),
        "term": step.terms[CASES[case]].detach(),
        "grad": torch.cat([g.flatten() for g in grads]),
    }


# ------------------------------------------------------------------------------------- two processes
def primitives(rank: int) -> dict[str, torch.Tensor]:
    """The collectives on per-rank inputs (rank 0 holds 3 rows, rank 1 holds 1)."""
    out: dict[str, torch.Tensor] = {}
    out["gather"] = D.gather_concat(torch.arange(3.0) if rank == 0 else torch.tensor([10.0]))
    out["gather_bool"] = D.gather_concat(torch.tensor([True, False, True]) if rank == 0 else torch.tensor([False]))
    x = (torch.arange(6.0).view(3, 2) if rank == 0 else torch.tensor([[7.0, -1.0]])).requires_grad_()
    gathered = D.all_gather_with_grad(x)
    (gathered @ gathered.t()).pow(2).sum().backward()  # every process: the same loss of the 4 gathered rows
    out["x_grad"] = x.grad
    value = torch.tensor([1.0 + rank, 5.0 - rank])
    for op in ("sum", "mean", "min", "max"):
        out[f"reduce_{op}"] = D.all_reduce(value, op)  # type: ignore[arg-type]
    linear = nn.Linear(2, 1)
    with torch.no_grad():
        linear.weight.fill_(float(rank))
    D.broadcast_parameters(linear)
    out["broadcast"] = linear.weight.detach().clone()
    linear.weight.grad = torch.full_like(linear.weight, 4.0) if rank == 1 else None  # absent on rank 0: zero
    linear.bias.grad = torch.full_like(linear.bias, 2.0 * (rank + 1))
    D.sync_gradients(linear.parameters())
    out["sync"] = torch.cat([linear.weight.grad.flatten(), linear.bias.grad])
    bn = nn.BatchNorm1d(2)
    bn.running_mean.fill_(float(rank))
    bn.num_batches_tracked.fill_(7 + rank)
    D.average_buffers(bn)
    out["buffers"] = torch.cat([bn.running_mean, bn.num_batches_tracked.view(1).float()])
    return out


def worker(rank: int, init: str, folder: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        out: dict[str, object] = {"primitives": primitives(rank), "world": D.world_size(), "rank": D.rank()}
        batch = global_batch()
        half = GLOBAL_BATCH // WORLD
        shard = rows(batch, slice(rank * half, (rank + 1) * half))
        out |= {case: run_case(case, shard, Path(folder)) for case in CASES}
        torch.save(out, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, list[dict]]:
    folder = tmp_path_factory.mktemp("ddp")
    save_pretrained(folder)
    # spawn, not fork: forking after torch's OpenMP thread pool has started can deadlock the children
    mp.start_processes(worker, args=(f"file://{folder / 'init'}", str(folder)), nprocs=WORLD, start_method="forkserver")
    return folder, [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.slow  # two spawned processes: most of the time is their imports
def test_collectives_across_two_processes(two_processes):
    _, ranks = two_processes
    assert [r["world"] for r in ranks] == [2, 2] and [r["rank"] for r in ranks] == [0, 1]
    x = torch.cat([torch.arange(6.0).view(3, 2), torch.tensor([[7.0, -1.0]])]).requires_grad_()
    (x @ x.t()).pow(2).sum().backward()  # the same loss in one process
    for rank, out in enumerate(ranks):
        p = out["primitives"]
        assert torch.equal(p["gather"], torch.tensor([0.0, 1.0, 2.0, 10.0]))
        assert torch.equal(p["gather_bool"], torch.tensor([True, False, True, False]))
        # backward: Σ over processes of the same loss' gradient = N · ∂L/∂x_local; the trainer's average of
        # the parameter gradients then divides by N
        local = x.grad[:3] if rank == 0 else x.grad[3:]
        torch.testing.assert_close(p["x_grad"], WORLD * local)
        torch.testing.assert_close(p["reduce_sum"], torch.tensor([3.0, 9.0]))
        torch.testing.assert_close(p["reduce_mean"], torch.tensor([1.5, 4.5]))
        torch.testing.assert_close(p["reduce_min"], torch.tensor([1.0, 4.0]))
        torch.testing.assert_close(p["reduce_max"], torch.tensor([2.0, 5.0]))
        assert torch.equal(p["broadcast"], torch.zeros(1, 2))  # rank 0's weights everywhere
        torch.testing.assert_close(p["sync"], torch.tensor([2.0, 2.0, 3.0]))  # (0 + 4) / 2, (2 + 4) / 2
        torch.testing.assert_close(p["buffers"], torch.tensor([0.5, 0.5, 7.0 + rank]))  # integers untouched


@pytest.mark.slow  # two spawned processes: most of the time is their imports
@pytest.mark.parametrize("case", list(CASES))
def test_batch_relational_loss_on_two_processes_equals_one_process_on_the_global_batch(two_processes, case):
    folder, ranks = two_processes
    single = run_case(case, global_batch(), folder)
    assert single["term"] > 0
    for rank, out in enumerate(ranks):
        torch.testing.assert_close(out[case]["term"], single["term"], msg=f"{case}: rank {rank}'s term")
        torch.testing.assert_close(out[case]["grad"], single["grad"], msg=f"{case}: rank {rank}'s averaged gradient")
    # the per-process losses average to the single-process loss (their CE is a per-shard mean)
    torch.testing.assert_close((ranks[0][case]["loss"] + ranks[1][case]["loss"]) / 2, single["loss"])
    # not vacuous: the term of one shard alone differs from the global one
    shard = run_case(case, rows(global_batch(), slice(0, GLOBAL_BATCH // 2)), folder)
    assert not torch.allclose(shard["term"], single["term"], rtol=1e-3)
