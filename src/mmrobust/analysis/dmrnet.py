"""DMRNet analyses of trained runs: what the paper's Fig. 1, Fig. 3 and Table 6 show.

``mmrobust analyze dmrnet RUN [RUN ...] [--out DIR] [--split test]`` (a RUN may be a sweep folder):

- σ² per subset (Fig. 3): the training variance d_S the run mined (``dmrnet_sigma2.json``), the hard set
  it chose, and σ² of the trained model in eval mode on the split; with the run's accuracy per subset, to
  check whether the top-k σ² subsets are the worst-performing ones.
- ``D_channel`` (Eq. 14–15, Fig. 1): the inter-channel diversity of the encoders' features (intra- and
  inter-modality) and of the inference representation μ (the neck's output) per subset; histograms.
- Across runs (Table 6): mean σ², accuracy and D_channel per method label (an α sweep gives one label
  per α), mean ± std over seeds.

Runs without a probabilistic neck (e.g. the MD baseline) get everything but σ².
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Subset

from mmrobust.batch import Batch
from mmrobust.data import Collate
from mmrobust.engine.checkpoint import load_checkpoint, load_model_state
from mmrobust.experiment import build_data, build_job_model, to_run_config
from mmrobust.methods.dmrnet import SIGMA2_FILE
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.models.necks import ProbabilisticNeck
from mmrobust.registry import ConfigError
from mmrobust.subsets import all_subsets, subset_mask, subset_name

from .diversity import diversity_values


@dataclass
class RunAnalysis:
    """What one trained run shows. σ² tables are empty for a deterministic neck or without a σ² log."""

    path: Path
    label: str
    seed: int
    method: dict[str, Any]
    modalities: list[str]
    subsets: list[str]
    accuracy: dict[str, float]
    train_sigma2: dict[str, float | None] = field(default_factory=dict)  # mined d_S
    last_sigma2: float | None = None  # mean σ² over all training samples of the last epoch
    hard: list[str] = field(default_factory=list)
    eval_sigma2: dict[str, float] = field(default_factory=dict)
    mu_diversity: dict[str, float] = field(default_factory=dict)
    intra: dict[str, torch.Tensor] = field(default_factory=dict)  # modality -> D_channel values
    inter: dict[str, torch.Tensor] = field(default_factory=dict)  # "m|n" -> D_channel values

    @property
    def k(self) -> int:
        """Size of the hard set: the mined one's, else the number of modalities (the paper's V)."""
        return len(self.hard) or len(self.modalities)

    def eval_top(self) -> list[str]:
        """The k subsets of largest σ² of the trained model in eval mode (empty for a deterministic neck)."""
        return sorted(self.eval_sigma2, key=lambda s: -self.eval_sigma2[s])[: self.k]

    def worst_accuracy(self) -> list[str]:
        """The k subsets of lowest accuracy."""
        return sorted(self.accuracy, key=lambda s: self.accuracy[s])[: self.k]

    def overlap(self, top: list[str]) -> str:
        """``'hits/k'``: how many of ``top`` are among the k worst-performing subsets (``–`` if none)."""
        return f"{len(set(top) & set(self.worst_accuracy()))}/{self.k}" if top else "–"


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run folders (``config.yaml`` + ``checkpoints/best.ckpt``) at or under the given paths."""
    runs: list[Path] = []
    for p in map(Path, paths):
        found = [q.parent for q in sorted(p.rglob("config.yaml")) if (q.parent / "checkpoints/best.ckpt").is_file()]
        runs += [r for r in found if r not in runs]
    if not runs:
        raise FileNotFoundError(f"no trained run (config.yaml + checkpoints/best.ckpt) under {[str(p) for p in paths]}")
    return runs


def load_run(path: Path) -> tuple[Any, Any, MultimodalModel]:
    """The run's config, its data splits and its best model (in eval mode)."""
    cfg = to_run_config(cast(DictConfig, OmegaConf.load(path / "config.yaml")))
    if cfg.method.get("runner", "single") != "single":
        raise ConfigError(f"{path}: analyze needs a run with one model (runner 'single')")
    data = build_data(cfg)
    model = build_job_model(cfg, data)
    best = path / "checkpoints" / "best.ckpt"
    load_model_state(model, load_checkpoint(best)["model"], best)
    return cfg, data, model.eval()


@torch.no_grad()
def collect(
    model: MultimodalModel, batches: list[Batch] | DataLoader, subsets: list[int]
) -> tuple[dict[str, torch.Tensor], dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Encoder features per modality, the inference representation per subset (μ, or the neck's output)
    and each sample's mean σ² per subset (empty for a deterministic neck).

    Shape: -> ``{m: [N, *feature]}``, ``{subset: [N, *rep]}``, ``{subset: [N]}``.
    """
    feats: dict[str, list[torch.Tensor]] = defaultdict(list)
    reps: dict[int, list[torch.Tensor]] = defaultdict(list)
    sigma2: dict[int, list[torch.Tensor]] = defaultdict(list)
    neck = model.neck_module
    for batch in batches:
        encoded = model.encode(batch)
        for m, f in encoded.items():
            feats[m].append(f)
        for s in subsets:
            fused = model.fuse(encoded, batch.present & subset_mask(s, len(batch.modalities)))
            if isinstance(neck, ProbabilisticNeck):
                mu, logvar = neck.distribution(fused)
                sigma2[s].append(logvar.exp().flatten(1).mean(dim=1))  # [B]
            else:
                mu = model.neck(fused)
            reps[s].append(mu)
    return (
        {m: torch.cat(v) for m, v in feats.items()},
        {s: torch.cat(v) for s, v in reps.items()},
        {s: torch.cat(v) for s, v in sigma2.items()},
    )


def analyze_run(path: str | Path, split: str = "test", max_samples: int = 1000) -> RunAnalysis:
    """Analyze one run on (the first ``max_samples`` samples of) ``split``."""
    path = Path(path)
    cfg, data, model = load_run(path)
    results = json.loads((path / "results.json").read_text())
    if split not in results["metrics"]:
        raise ConfigError(f"{path}/results.json has no {split!r} metrics; available: {list(results['metrics'])}")
    dataset = getattr(data, split)
    loader = DataLoader(
        Subset(dataset, range(min(len(dataset), max_samples))),
        batch_size=256,
        collate_fn=Collate(dataset.modalities, dataset.shapes),
    )
    subsets = all_subsets(len(data.modalities))
    feats, reps, sigma2 = collect(model, loader, subsets)
    names = {s: subset_name(s, data.modalities) for s in subsets}
    run = RunAnalysis(
        path=path,
        label=str(cfg.method.get("label") or cfg.method["name"]),
        seed=cfg.seed,
        method={k: v for k, v in cfg.method.items() if k in ("name", "alpha", "beta", "top_k")},
        modalities=list(data.modalities),
        subsets=list(names.values()),
        accuracy={s: float(m["accuracy"]) for s, m in results["metrics"][split].items()},
        eval_sigma2={names[s]: float(v.mean()) for s, v in sigma2.items()},
        mu_diversity={names[s]: float(diversity_values(r).mean()) for s, r in reps.items()},
    )
    log_file = path / SIGMA2_FILE
    if log_file.is_file():
        logged = json.loads(log_file.read_text())
        last = logged["epochs"][-1]
        run.train_sigma2, run.hard = logged["mining_sigma2"], logged["hard"]
        total = sum(last["count"].values())
        weighted = sum(v * last["count"][s] for s, v in last["sigma2"].items() if v is not None)
        run.last_sigma2 = weighted / total if total else None
    modalities = list(feats)
    for i, m in enumerate(modalities):
        run.intra[m] = diversity_values(feats[m])
        for n in modalities[i + 1 :]:
            if feats[m].shape[2:] == feats[n].shape[2:]:
                run.inter[f"{m}|{n}"] = diversity_values(feats[m], feats[n])
    return run


def main(argv: list[str]) -> None:
    """``mmrobust analyze dmrnet RUN [RUN ...] [--out DIR] [--split test] [--max-samples N]``."""
    from .dmrnet_report import write_outputs

    parser = argparse.ArgumentParser(
        prog="mmrobust analyze dmrnet",
        description="σ² per subset (Fig. 3), D_channel histograms (Fig. 1) and an α sweep table (Table 6).",
    )
    parser.add_argument("runs", nargs="+", help="run folders or sweep folders holding them")
    parser.add_argument("--out", default=None, help="output folder (default: FIRST_RUN/analysis_dmrnet)")
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--max-samples", type=int, default=1000, help="samples of the split to use")
    ns = parser.parse_args(argv)
    runs = [analyze_run(p, ns.split, ns.max_samples) for p in find_runs(ns.runs)]
    out = Path(ns.out) if ns.out else runs[0].path / "analysis_dmrnet"
    paths = write_outputs(runs, out)
    print(paths["summary"].read_text())
    print(f"saved: {', '.join(str(p) for p in paths.values())}")
