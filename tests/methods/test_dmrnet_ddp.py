"""DMRNet's per-subset σ² statistics are summed over processes: 2 gloo processes ≡ 1 process."""

import json
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmrobust.methods import EpochContext, MethodContext, TrainState
from mmrobust.methods.dmrnet import SIGMA2_FILE, DMRNet


def make_method(run_dir: str) -> DMRNet:
    context = MethodContext(("a", "b", "c"), 3, build_model=None, fit=None, run_dir=Path(run_dir))  # type: ignore[arg-type]
    return DMRNet(context, begin_epoch=1, top_k=2)


def statistics() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(1, 8, (16,), generator=generator), torch.randn(16, 5, generator=generator)


def end_epoch(method: DMRNet, run_dir: str) -> None:
    method.on_epoch_end(None, TrainState(epoch=0), EpochContext(validate=None, log=None, run_dir=run_dir))  # type: ignore[arg-type]


def worker(rank: int, port: int, run_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        method = make_method(run_dir)
        subsets, logvar = statistics()
        half = slice(8 * rank, 8 * rank + 8)
        method.accumulate(subsets[half], logvar[half])
        end_epoch(method, run_dir)
        torch.save(method.state_dict(), Path(run_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_sum_their_statistics_and_mine_the_same_hard_set(tmp_path):
    (tmp_path / "ddp").mkdir()
    mp.start_processes(worker, args=(free_port(), str(tmp_path / "ddp")), nprocs=2, start_method="fork")
    single = make_method(str(tmp_path / "one"))
    single.accumulate(*statistics())
    end_epoch(single, str(tmp_path / "one"))
    assert single.sigma2_count.sum() == 16 and single.hard.sum() == 2
    for rank in (0, 1):
        state = torch.load(tmp_path / "ddp" / f"rank{rank}.pt", weights_only=True)
        for key in ("sigma2_sum", "sigma2_count", "hard"):
            torch.testing.assert_close(state[key], single.state_dict()[key], msg=f"rank {rank} {key}")
    logged = [json.loads((tmp_path / run / SIGMA2_FILE).read_text()) for run in ("ddp", "one")]
    assert logged[0]["hard"] == logged[1]["hard"] and logged[0]["epochs"][0]["count"] == logged[1]["epochs"][0]["count"]
