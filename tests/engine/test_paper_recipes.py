"""The papers' training recipes (configs/trainer/*_paper.yaml) give the authors' optimizer and lr schedule."""

import pytest
import torch
from hydra.errors import MissingConfigException

from mmrobust.api import compose_config
from mmrobust.engine.optim import lr_factor
from mmrobust.experiment import to_run_config

STEPS = 4  # optimizer steps per epoch


def trainer(name: str):
    return to_run_config(compose_config([f"trainer={name}"])).trainer


def per_epoch(cfg) -> list[float]:
    """Our lr factor at the first step of every epoch."""
    return [lr_factor(e * STEPS, STEPS, cfg.max_epochs, cfg.scheduler) for e in range(cfg.max_epochs)]


def torch_schedule(scheduler_class, epochs: int, **kwargs) -> list[float]:
    """torch's own scheduler, stepped once per epoch, as the authors' code does."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = scheduler_class(opt, **kwargs)
    factors = []
    for _ in range(epochs):
        factors.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return factors


def test_av_paper_is_ogm_ge_sgd_and_step_lr():
    cfg = trainer("av_paper")
    opt = cfg.optimizer
    assert (opt.name, opt.lr, opt.momentum, opt.nesterov, opt.weight_decay) == ("sgd", 1e-3, 0.9, False, 1e-4)
    assert (cfg.max_epochs, cfg.batch_size) == (100, 64)
    expected = torch_schedule(torch.optim.lr_scheduler.StepLR, 100, step_size=70, gamma=0.1)
    assert per_epoch(cfg) == pytest.approx(expected)


def test_surf_paper_is_nesterov_sgd_with_warmup_and_multistep():
    cfg = trainer("surf_paper")
    opt = cfg.optimizer
    assert (opt.name, opt.lr, opt.momentum, opt.nesterov, opt.weight_decay) == ("sgd", 1e-3, 0.9, True, 5e-4)
    assert (cfg.max_epochs, cfg.batch_size) == (100, 64)
    ours = per_epoch(cfg)
    assert ours[0] == 0.0 and 0 < ours[2] < ours[4] < 1  # warm-up from 0 over 5 epochs
    expected = torch_schedule(torch.optim.lr_scheduler.MultiStepLR, 100, milestones=[16, 33, 50], gamma=0.1)
    assert ours[5:] == pytest.approx(expected[5:])  # 1 until 16, then 0.1, 0.01, 0.001


def test_osmd_paper_is_the_papers_50_epoch_sgd():
    cfg = trainer("osmd_paper")
    opt = cfg.optimizer
    assert (opt.name, opt.lr, opt.momentum, cfg.batch_size, cfg.max_epochs) == ("sgd", 1e-3, 0.9, 64, 50)
    assert per_epoch(cfg)[-1] == pytest.approx(1e-3)  # three decays before the end


def test_the_generic_recipe_is_named_neutrally():
    assert trainer("sgd_step").optimizer.name == "sgd"
    with pytest.raises(MissingConfigException, match="trainer/sgd_multistep"):  # renamed: it is no paper's recipe
        trainer("sgd_multistep")
