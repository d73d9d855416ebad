"""DMRNet end to end: the real CLI trains, logs the σ² table, re-evaluates and analyzes; shipped configs."""

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mmrobust import api
from mmrobust.experiment import build_data, build_job_model, to_run_config
from mmrobust.methods import METHODS
from mmrobust.methods.dmrnet import SIGMA2_FILE
from mmrobust.models.necks import ProbabilisticNeck
from tests.conftest import TINY_CLI, method_context

CONFIGS = Path(__file__).resolve().parents[2] / "src/mmrobust/configs"
TINY = [
    *TINY_CLI,
]


@pytest.mark.slow
def test_train_logs_sigma2_eval_reproduces_and_analyze_writes_its_figures(tmp_path, cli):
    run = tmp_path / "dmrnet"
    out = cli(
        [
            "train",
            "experiment=dmrnet_synthetic",
            "method=dmrnet",
            "method.begin_epoch=1",
            *TINY,
            f"hydra.run.dir={run}",
        ]
    )
    assert out.returncode == 0, out.stderr
    logged = json.loads((run / SIGMA2_FILE).read_text())
    assert [e["epoch"] for e in logged["epochs"]] == [0, 1] and len(logged["hard"]) == 3
    assert all(v > 0 for v in logged["mining_sigma2"].values())
    results = json.loads((run / "results.json").read_text())

    again = api.evaluate(run)  # what `mmrobust eval RUN` runs: the model is rebuilt from the saved config
    assert again["metrics"]["test"] == results["metrics"]["test"]

    baseline = tmp_path / "md"
    api.train(["experiment=dmrnet_synthetic", "method=modality_dropout", *TINY], run_dir=baseline)
    report = tmp_path / "analysis"
    assert cli(["analyze", "dmrnet", str(run), str(baseline), "--out", str(report)]).returncode == 0
    summary = (report / "summary.md").read_text()
    assert "| dmrnet | 1 | 0.001 | 0.5 |" in summary and "| modality_dropout | 1 |" in summary
    table = (report / "dmrnet_seed0_subsets.md").read_text()
    assert table.count("★") == 6 and "mined hard set H" in table  # H and the eval-mode top-3, marked per row
    analysis = {a["label"]: a for a in json.loads((report / "analysis.json").read_text())}
    assert analysis["dmrnet"]["hard"] == logged["hard"] and len(analysis["dmrnet"]["eval_top_k_sigma2"]) == 3
    baseline_analysis = analysis["modality_dropout"]  # deterministic neck: no σ², but D_channel
    assert baseline_analysis["eval_sigma2"] == {} and set(baseline_analysis["intra_diversity"]) == {"a", "b", "c"}
    for png in ("dmrnet_seed0_sigma2.png", "d_channel_hist.png"):
        assert (report / png).stat().st_size > 5000
    assert not (report / "modality_dropout_seed0_sigma2.png").exists()


def swept_methods(experiment: str) -> list[str]:
    params = OmegaConf.load(CONFIGS / "experiment" / f"{experiment}.yaml").hydra.sweeper.params
    return str(params.method).split(",") if "method" in params else [""]


def runnable_here(experiment: str) -> bool:
    """Experiments on shipped or generated data: the paper-table ones need the published dataset on disk."""
    return not OmegaConf.load(CONFIGS / "experiment" / f"{experiment}.yaml").get("eval", {}).get("paper_table")


@pytest.mark.parametrize(
    "experiment",
    [e for e in sorted(p.stem for p in (CONFIGS / "experiment").glob("dmrnet_*.yaml")) if runnable_here(e)],
)
def test_shipped_experiments_configure_the_neck_each_method_trains(experiment):
    """The shipped dmrnet experiments name the trained neck in the model config (what the figures in docs/ ran),
    so dmrnet's model_config has nothing to change, and build_job_model builds that neck."""
    for method in swept_methods(experiment):
        cfg = to_run_config(api.compose_config([f"experiment={experiment}", *([f"method={method}"] if method else [])]))
        cfg.dataset |= {"samples_per_split": [16, 8, 8]} if cfg.dataset["name"] == "synthetic" else {}
        model = build_job_model(cfg, build_data(cfg))
        if cfg.method["name"] == "dmrnet":
            spec = {k: v for k, v in cfg.method.items() if k not in ("name", "label")}
            declared = METHODS.build("dmrnet", spec, context=method_context()).model_config(dict(cfg.model))
            assert declared == cfg.model, (experiment, method)  # nothing to replace
            assert isinstance(model.neck_module, ProbabilisticNeck), (experiment, method)
        else:
            assert cfg.model["neck"] == {"name": "identity"}, (experiment, method)
