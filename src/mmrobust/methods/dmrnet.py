"""``dmrnet``: DMRNet (Wei et al., ECCV 2024) — decoupled multimodal representation + hard combinations.

Per sample a modality subset S is drawn as in ``modality_dropout``. The model's probabilistic neck turns the
fused representation into N(μ, σ²); the head sees a reparameterized sample s = μ + ε·σ in training and μ
at inference (the neck is part of the deployed model). With ``d_S`` the mean σ² over all elements of the
samples whose subset is S (paper Eq. 10), accumulated over epochs ``[0, begin_epoch)``, the hard set H is
the ``top_k`` subsets of largest ``d_S``. The loss (paper Eq. 13)::

    L = CE(head(s), y) + α · L_DR + β · L_HCR
    L_DR  = (1/B) Σ_b KL(N(μ_b, σ²_b) ‖ N(0, I))                      (paper Eq. 9)
    L_HCR = (1/B) Σ_b 1[S_b ∈ H] · CE(head(s'_b), y_b)   from begin_epoch (paper Eq. 11–12)

where s' is a second, independent sample through the same head (no new parameters). ``beta: 0`` is the
paper's "+DMR" ablation; the σ² table and H are still mined and logged then (paper Fig. 3).

The per-subset σ² table of every epoch and H are written to ``<run>/dmrnet_sigma2.json``; the mining
statistics and H are buffers of the method, so they are checkpointed and a resumed run keeps them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from mmrobust.atomic_io import write_json_atomic
from mmrobust.batch import Batch
from mmrobust.distributed import all_reduce_sum, is_main_process
from mmrobust.losses.gaussian_kl import gaussian_kl
from mmrobust.methods.base import METHODS, EpochContext, Method, MethodContext, StepOutput, TrainState
from mmrobust.methods.modality_dropout import ModalityDropout
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.models.necks import NECKS, ProbabilisticNeck
from mmrobust.registry import ConfigError
from mmrobust.subsets import all_subsets, masks_to_subsets, subset_name

log = logging.getLogger(__name__)
SIGMA2_FILE = "dmrnet_sigma2.json"
NECK_MISSING = (
    "method=dmrnet needs a model with a probabilistic neck, got {}: build the model from "
    "method.model_config(<model config>) (mmrobust train does)"
)


def hard_subsets(sums: torch.Tensor, counts: torch.Tensor, k: int) -> list[int]:
    """The ``k`` subsets of largest mean σ² ``sums / counts`` (subsets never seen are skipped; ties go to
    the earlier subset in the papers' order). ``sums`` and ``counts`` are indexed by subset bitmask.

    Shape: sums, counts ``[2^M]`` -> list of at most ``k`` bitmasks.
    """
    num_modalities = len(sums).bit_length() - 1
    seen = [s for s in all_subsets(num_modalities) if counts[s] > 0]
    return sorted(seen, key=lambda s: -float(sums[s] / counts[s]))[:k]


@METHODS.register("dmrnet")
class DMRNet(Method):
    """DMRNet; see the module docstring.

    Args:
        context: the run (modality order, run folder).
        alpha: weight α of the KL term L_DR (paper default 1e-3).
        beta: weight β of the hard combination regularizer (paper: 0.7 CASIA-SURF, 0.3 CREMA-D and
            Kinetics-Sounds, 0.5 NYUv2); 0 gives the "+DMR" ablation.
        top_k: size of the hard set H; default V, the number of modalities (as the paper).
        begin_epoch: epochs ``[0, begin_epoch)`` mine d_S; L_HCR applies from this epoch on.
        rerank: also re-rank H at the end of every later epoch from that epoch's σ² table.
        distribution: the subset distribution of ``modality_dropout`` (default uniform).
        neck: the probabilistic neck put in place of an ``identity`` neck of the model config (see
            ``model_config``; the run saves the resulting config, so ``mmrobust eval`` rebuilds that neck).
    """

    sigma2_sum: torch.Tensor  # [2^M] Σ over mining epochs of per-sample mean σ², by subset bitmask
    sigma2_count: torch.Tensor  # [2^M] number of those samples
    hard: torch.Tensor  # [2^M] bool, the hard set H

    def __init__(
        self,
        context: MethodContext,
        alpha: float = 1e-3,
        beta: float = 0.5,
        top_k: int | None = None,
        begin_epoch: int = 5,
        rerank: bool = False,
        distribution: dict[str, Any] | None = None,
        neck: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        num_subsets = (1 << len(context.modalities)) - 1
        self.top_k = len(context.modalities) if top_k is None else top_k
        if alpha < 0 or beta < 0:
            raise ConfigError(f"method.alpha and method.beta must be >= 0, got {alpha} and {beta}")
        if begin_epoch < 1:
            raise ConfigError(
                f"method.begin_epoch: needs at least one epoch to mine hard subsets (>= 1), got {begin_epoch}"
            )
        if not 1 <= self.top_k <= num_subsets:
            raise ConfigError(f"method.top_k: must be in [1, {num_subsets}], got {self.top_k}")
        self.neck_spec = dict(neck or {"name": "probabilistic"})
        neck_name = str(self.neck_spec.pop("name", "probabilistic"))
        neck_class = NECKS.get(neck_name)
        if not (isinstance(neck_class, type) and issubclass(neck_class, ProbabilisticNeck)):
            raise ConfigError(f"method.neck.name: {neck_name!r} is not a probabilistic neck")
        self.neck_name = neck_name
        self.alpha, self.beta, self.begin_epoch, self.rerank = alpha, beta, begin_epoch, rerank
        self.modalities = context.modalities
        self.task = context.task
        self.dropout = ModalityDropout(context, distribution)
        # indexed by subset bitmask (entry 0, the empty subset, stays unused)
        self.register_buffer("sigma2_sum", torch.zeros(num_subsets + 1, dtype=torch.float64))
        self.register_buffer("sigma2_count", torch.zeros(num_subsets + 1, dtype=torch.float64))
        self.register_buffer("hard", torch.zeros(num_subsets + 1, dtype=torch.bool))
        # this epoch's [sums, counts]: a plain tensor, not a buffer, as the trainer averages float buffers
        self.epoch_stats: torch.Tensor | None = None

    def model_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Declare the probabilistic neck: keep a probabilistic neck of ``config``, put ``method.neck`` in place
        of an ``identity`` (or unset) one; any other neck is a config error. An ``architecture`` config (e.g.
        ESANet) takes the same ``neck`` key: the decoupling at its penultimate layer."""
        config = dict(config)
        neck = dict(config.get("neck") or {"name": "identity"})
        name = str(neck.get("name"))
        neck_class = NECKS.get(name) if name in NECKS else None
        if isinstance(neck_class, type) and issubclass(neck_class, ProbabilisticNeck):
            return config
        if name != "identity":
            raise ConfigError(
                f"method=dmrnet needs a probabilistic neck (model.neck.name=probabilistic or probabilistic_pooled) "
                f"or an identity neck it can replace, got model.neck.name={name!r}"
            )
        config["neck"] = {"name": self.neck_name, **self.neck_spec}
        return config

    def prepare(self, model: MultimodalModel) -> None:
        """Check that the model was built from ``model_config`` (it has a probabilistic neck)."""
        if not isinstance(model.neck_module, ProbabilisticNeck):
            raise ConfigError(NECK_MISSING.format(type(model.neck_module).__name__))

    def full_loss_epoch(self) -> int:
        """HCR starts at ``begin_epoch``."""
        return self.begin_epoch if self.beta > 0 else 0

    def forward(self, model: MultimodalModel, batch: Batch, state: TrainState) -> StepOutput:
        neck = model.neck_module
        if not isinstance(neck, ProbabilisticNeck):
            raise ConfigError(NECK_MISSING.format(type(neck).__name__))
        dropped = self.dropout.drop(batch, state)
        fused = model.fuse(model.encode(dropped), dropped.present)
        mu, logvar = neck.distribution(fused)  # [B, C, H, W] or [B, D] each
        logits = model.head(neck.sample(mu, logvar))  # [B, K]
        ce = self.task.loss(logits, dropped.target)
        dr = gaussian_kl(mu, logvar)
        subsets = masks_to_subsets(dropped.present)  # [B]
        self.accumulate(subsets, logvar.detach())
        loss = ce + self.alpha * dr
        terms = {"ce": ce.detach(), "dr": dr.detach(), "sigma2": logvar.detach().exp().mean()}
        if self.beta > 0 and state.epoch >= self.begin_epoch:
            hcr = self.task.loss(model.head(neck.sample(mu, logvar)), dropped.target, self.hard[subsets])
            loss = loss + self.beta * hcr
            terms["hcr"] = hcr.detach()
        return StepOutput(loss=loss, terms=terms, output=logits)

    def accumulate(self, subsets: torch.Tensor, logvar: torch.Tensor) -> None:
        """Add each sample's mean σ² over its elements to its subset's running sum (and count it).

        Shape: subsets ``[B]`` bitmasks, logvar ``[B, *]``.
        """
        if self.epoch_stats is None:
            self.epoch_stats = torch.zeros(2, len(self.hard), dtype=torch.float64, device=logvar.device)
        per_sample = logvar.flatten(1).double().exp().mean(dim=1)  # [B]
        self.epoch_stats[0].index_add_(0, subsets, per_sample)
        self.epoch_stats[1].index_add_(0, subsets, torch.ones_like(per_sample))

    def on_epoch_end(self, model: MultimodalModel, state: TrainState, ctx: EpochContext) -> None:
        """Sum this epoch's σ² table over processes, mine (or re-rank) H, and log both."""
        stats = self.epoch_stats
        self.epoch_stats = None
        if stats is None:
            stats = torch.zeros(2, len(self.hard), dtype=torch.float64, device=self.sigma2_sum.device)
        sums, counts = all_reduce_sum(stats.to(self.sigma2_sum.device))
        if state.epoch < self.begin_epoch:
            self.sigma2_sum += sums
            self.sigma2_count += counts
            if state.epoch == self.begin_epoch - 1:
                self.set_hard(hard_subsets(self.sigma2_sum, self.sigma2_count, self.top_k), "mined")
        elif self.rerank:
            self.set_hard(hard_subsets(sums, counts, self.top_k), "re-ranked")
        if ctx.run_dir is not None and is_main_process():
            self.write_log(Path(ctx.run_dir) / SIGMA2_FILE, state.epoch, sums, counts)

    def set_hard(self, subsets: list[int], how: str) -> None:
        self.hard.zero_()
        self.hard[subsets] = True
        log.info("dmrnet: %s hard combinations %s", how, [subset_name(s, self.modalities) for s in subsets])

    def sigma2_table(self, sums: torch.Tensor, counts: torch.Tensor) -> dict[str, float | None]:
        """``{subset name: mean σ²}`` (None for a subset without samples)."""
        return {
            subset_name(s, self.modalities): float(sums[s] / counts[s]) if counts[s] > 0 else None
            for s in all_subsets(len(self.modalities))
        }

    def write_log(self, path: Path, epoch: int, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """Rewrite the σ² log with this epoch appended (entries of later epochs, left by a resumed run, go)."""
        epochs = json.loads(path.read_text())["epochs"] if path.is_file() else []
        hard = [subset_name(s, self.modalities) for s in all_subsets(len(self.modalities)) if self.hard[s]]
        record = {
            "epoch": epoch,
            "sigma2": self.sigma2_table(sums, counts),
            "count": {subset_name(s, self.modalities): int(counts[s]) for s in all_subsets(len(self.modalities))},
            "hard": hard,
        }
        write_json_atomic(
            {
                "modalities": list(self.modalities),
                "top_k": self.top_k,
                "begin_epoch": self.begin_epoch,
                "rerank": self.rerank,
                "hard": hard,
                "mining_sigma2": self.sigma2_table(self.sigma2_sum, self.sigma2_count),
                "epochs": [e for e in epochs if e["epoch"] < epoch] + [record],
            },
            path,
        )
