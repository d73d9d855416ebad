"""Two processes, each with half of a batch, compute the same ARL and OGM-GE coefficients as one process
with the whole batch (their statistics are all-reduced), so the gradient modulation is identical."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmrobust.methods import TrainState
from mmrobust.methods.arl import ARL
from mmrobust.methods.ogm_ge import OGMGE
from tests.conftest import batch_of, method_context, tiny_dataset, tiny_model

CONCAT = {"encoder": {"name": "mlp", "hidden": [16], "out_features": 8}, "fusion": {"name": "concat"}}


def coefficients(start: int, size: int) -> torch.Tensor:
    """ARL's w (residual active) and OGM-GE's k on ``size`` samples from ``start``, for a concat and a
    concat-MLP model (OGM-GE's exact and general score)."""
    ds = tiny_dataset(missing_rate=0.3)
    batch = batch_of(ds, size, start=start)
    out = []
    for config in (CONCAT, None):
        step = ARL(method_context())(tiny_model(ds, config), batch, TrainState(epoch=5))
        out.append(torch.stack([step.terms[f"w_{m}"] for m in "abc"]))
        ogm = OGMGE(method_context())
        ogm(tiny_model(ds, config), batch, TrainState())
        out.append(ogm.coefficients)
    return torch.stack(out)


def worker(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        torch.save(coefficients(16 * rank, 16), f"{out}{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_with_half_batches_agree_with_one_process(tmp_path):
    # spawn, not fork: forking after torch's OpenMP thread pool has started can deadlock the children
    args = (f"file://{tmp_path / 'init'}", str(tmp_path / "rank"))
    mp.start_processes(worker, args=args, nprocs=2, start_method="forkserver")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert torch.equal(ranks[0], ranks[1])
    torch.testing.assert_close(ranks[0], coefficients(0, 32), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(coefficients(0, 16), coefficients(0, 32))  # the halves alone would disagree
