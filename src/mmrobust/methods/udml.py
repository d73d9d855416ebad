"""``udml``: Unbiased Dynamic Multimodal Learning (Wei et al., CVPR 2026, arXiv 2603.19681).

The deployed part is the model's ``udml`` fusion (``models/udml_fusion.py``; ``model_config`` wraps the configured
fusion in it): per-modality probabilistic embeddings, a noise-level estimator per modality, inverse-variance
weights divided by the modality dependence, and ``(1 + w_m)``-scaled features. This method trains it:

1. (optional) per-sample modality dropout (``distribution``, as ``modality_dropout``; off by default as in the
   reference code);
2. noise injection: each present modality of each sample is clean (level ``l = 0``) with probability
   ``clean_prob``, else corrupted with a kind drawn uniformly from ``kinds`` at level ``l ~ U(0, 1]`` and strength
   ``l · max_strength`` (``mmrobust.corruption.corrupt``; one generator per sample from ``(seed, epoch, dataset
   index, modality)``, so the draw does not depend on the batch or the number of processes);
3. unimodal logits ``p_m = head(neck(fuse(z, {m})))`` through the shared stages (no new parameters); the
   dependence ``d_m`` = mean over the samples with ``m`` of ``Σ_c |p_m,c|`` (ARL's measure, all-reduced), written
   into the fusion's ``dependence`` buffer (``d ← momentum·d + (1 − momentum)·d_batch``) before the fused pass;
4. the fused pass; the fusion weights are held at 1 for epochs ``< warmup_epochs``.

Loss::

    L = CE(p_fused) + γ Σ_m CE(p_m) + β L_KL + λ L_lvl

with the masked means of ``losses/udml.py`` (``L_KL`` to N(0, I) by default, ``L_lvl`` the MSE between the
predicted and the injected level). docs/udml.md lists where this differs from the paper and the reference code.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from mmrobust.batch import Batch
from mmrobust.corruption import CORRUPTIONS, corrupt, sample_seed
from mmrobust.losses.udml import embedding_kl, level_loss
from mmrobust.methods.arl import modality_statistics
from mmrobust.methods.base import METHODS, Method, MethodContext, StepOutput, TrainState
from mmrobust.methods.modality_dropout import ModalityDropout
from mmrobust.methods.unimodal import present_columns, unimodal_logits
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.models.udml_fusion import UDMLFusion
from mmrobust.registry import ConfigError

NOISE_STREAM = 7_000  # generator streams of the noise draws: NOISE_STREAM + modality index


def draw_levels(
    index: torch.Tensor, present: torch.Tensor, seed: int, epoch: int, clean_prob: float, num_kinds: int
) -> tuple[torch.Tensor, torch.Tensor, list[list[torch.Generator]]]:
    """Per sample and modality: the noise level ``l`` (0 with probability ``clean_prob``, else ``U(0, 1]``), the
    kind index, and the generator (seeded by ``(seed, epoch, index, modality)``) that then draws the noise.
    Absent modalities get level 0.

    Shape: index ``[B]``, present ``[B, M]`` -> levels ``[B, M]`` float, kinds ``[B, M]`` long, B × M generators.
    """
    ids = index.cpu().tolist()
    keep = present.cpu()
    levels = torch.zeros(keep.shape, dtype=torch.float32)
    kinds = torch.zeros(keep.shape, dtype=torch.long)
    generators: list[list[torch.Generator]] = []
    for i, idx in enumerate(ids):
        row = []
        for j in range(keep.shape[1]):
            g = torch.Generator().manual_seed(sample_seed(seed * 100_003 + epoch, int(idx), NOISE_STREAM + j))
            u = torch.rand(3, generator=g).tolist()  # [clean?, kind, level]
            if bool(keep[i, j]) and u[0] >= clean_prob:
                levels[i, j] = 1.0 - u[2]  # (0, 1]
                kinds[i, j] = min(int(u[1] * num_kinds), num_kinds - 1)
            row.append(g)
        generators.append(row)
    return levels.to(present.device), kinds.to(present.device), generators


@METHODS.register("udml")
class UDML(Method):
    """UDML; see the module docstring.

    Args:
        context: the run (modality order, task).
        gamma: γ, weight of the unimodal cross-entropies (reference 2.5–4).
        beta: β, weight of the embeddings' KL (reference 0–1e-3).
        lam: λ, weight of the level regression (reference 0.1).
        warmup_epochs: epochs ``[0, warmup_epochs)`` hold the fusion weights at 1.
        kinds: corruption kinds drawn uniformly per corrupted (sample, modality).
        max_strength: strength of level 1, in the units of ``mmrobust.corruption`` (QMF's ``s``).
        clean_prob: probability that a (sample, modality) is left clean (level 0).
        noise_start_epoch: no noise (all levels 0) before this epoch (the reference's clean phase).
        dependence_momentum: momentum of the dependence buffer (0: the last batch, as the reference).
        kl_prior: ``standard`` (N(0, I), the paper) or ``level`` (N(0, v·I), v = (1 + κ l)², as the released code).
        distribution: per-sample modality dropout (``modality_dropout``'s ``distribution``); null = none.
        level_scale, hidden, dropout: options of the ``udml`` fusion that ``model_config`` declares.
    """

    supported_tasks = ("classification",)
    task_reason = "its dependence and unimodal terms are defined on per-sample class predictions (classification only)"

    def __init__(
        self,
        context: MethodContext,
        gamma: float = 4.0,
        beta: float = 1e-3,
        lam: float = 0.1,
        warmup_epochs: int = 5,
        kinds: list[str] | None = None,
        max_strength: float = 10.0,
        clean_prob: float = 0.5,
        noise_start_epoch: int = 0,
        dependence_momentum: float = 0.0,
        kl_prior: str = "standard",
        distribution: dict[str, Any] | None = None,
        level_scale: float = 10.0,
        hidden: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.kinds = list(kinds if kinds is not None else ["gaussian", "salt"])
        unknown = [k for k in self.kinds if k not in CORRUPTIONS]
        if not self.kinds or unknown:
            raise ConfigError(
                f"method.kinds: need at least one corruption kind out of {sorted(CORRUPTIONS)}, got {self.kinds}"
            )
        if min(gamma, beta, lam, max_strength) < 0 or warmup_epochs < 0 or noise_start_epoch < 0:
            raise ConfigError(
                "method.gamma, beta, lam, max_strength, warmup_epochs and noise_start_epoch must be >= 0, got "
                f"{gamma}, {beta}, {lam}, {max_strength}, {warmup_epochs}, {noise_start_epoch}"
            )
        if not 0 <= clean_prob <= 1 or not 0 <= dependence_momentum < 1:
            raise ConfigError(
                f"method.clean_prob must be in [0, 1] and method.dependence_momentum in [0, 1), "
                f"got {clean_prob} and {dependence_momentum}"
            )
        if kl_prior not in ("standard", "level"):
            raise ConfigError(f"method.kl_prior: expected 'standard' or 'level', got {kl_prior!r}")
        self.gamma, self.beta, self.lam = float(gamma), float(beta), float(lam)
        self.warmup_epochs, self.noise_start_epoch = int(warmup_epochs), int(noise_start_epoch)
        self.max_strength, self.clean_prob = float(max_strength), float(clean_prob)
        self.dependence_momentum, self.kl_prior = float(dependence_momentum), kl_prior
        self.fusion_options = {"level_scale": level_scale, "hidden": hidden, "dropout": dropout}
        self.task = context.task
        self.dropout = None if distribution is None else ModalityDropout(context, distribution)

    def model_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Wrap the configured fusion in ``udml`` (a ``udml`` fusion is kept); architectures are refused."""
        config = dict(config)
        if "architecture" in config:
            raise ConfigError(
                f"method=udml needs a model of encoders + fusion + neck + head (it wraps the fusion), "
                f"got model.architecture={config['architecture']!r}"
            )
        fusion = dict(config.get("fusion") or {"name": "concat"})
        if fusion.get("name") != "udml":
            config["fusion"] = {"name": "udml", "fusion": fusion, **self.fusion_options}
        return config

    def prepare(self, model: MultimodalModel) -> None:
        fusion_of(model)

    def full_loss_epoch(self) -> int:
        """The weights follow the estimates from ``warmup_epochs`` on."""
        return self.warmup_epochs

    def inject(self, batch: Batch, state: TrainState) -> tuple[Batch, torch.Tensor]:
        """The batch with the noise of step 2 of the module docstring and the levels ``[B, M]``."""
        if state.epoch < self.noise_start_epoch:
            return batch, torch.zeros(batch.present.shape, device=batch.present.device)
        levels, kinds, generators = draw_levels(
            batch.index, batch.present, state.seed, state.epoch, self.clean_prob, len(self.kinds)
        )
        inputs = dict(batch.inputs)
        for j, m in enumerate(batch.modalities):
            rows = torch.nonzero(levels[:, j] > 0).flatten().tolist()
            if not rows:
                continue
            x = inputs[m].clone()
            for i in rows:
                strength = float(levels[i, j]) * self.max_strength
                x[i : i + 1] = corrupt(inputs[m][i : i + 1], self.kinds[int(kinds[i, j])], strength, generators[i][j])
            inputs[m] = x
        return replace(batch, inputs=inputs), levels

    def forward(self, model: MultimodalModel, batch: Batch, state: TrainState) -> StepOutput:
        fusion = fusion_of(model)
        if self.dropout is not None:
            batch = self.dropout.drop(batch, state)
        batch, levels = self.inject(batch, state)
        features = model.encode(batch)
        unimodal = unimodal_logits(model, features, batch.present)
        mask = present_columns(model, unimodal, batch.present)  # [B, V]
        _, dependence, valid = modality_statistics(unimodal, mask, model.modalities)
        fusion.update_dependence(dependence, valid, self.dependence_momentum)
        with fusion.capture(hold_weights=state.epoch < self.warmup_epochs) as captured:
            fused = model.fuse(features, batch.present)
        parts = captured[-1]
        logits = model.head(model.neck(fused))  # [B, C]
        ce_fused = self.task.loss(logits, batch.target)
        ce = [self.task.loss(p, batch.target, mask[:, v]) for v, p in enumerate(unimodal.values())]
        present = batch.present.to(device=levels.device) & torch.tensor(
            [m in features for m in model.modalities], device=levels.device
        )  # [B, M]
        prior = (1.0 + fusion.level_scale * levels).square() if self.kl_prior == "level" else None
        kl = embedding_kl(parts.mu, parts.logvar, present, prior)
        mse = level_loss(parts.level, levels, present)
        loss = ce_fused + self.gamma * torch.stack(ce).sum() + self.beta * kl + self.lam * mse
        terms = {"ce_fused": ce_fused.detach(), "kl": kl.detach(), "level_mse": mse.detach()}
        for v, m in enumerate(unimodal):
            j = model.modalities.index(m)
            rows = present[:, j]
            terms[f"ce_{m}"] = ce[v].detach()
            terms[f"w_{m}"] = parts.weights[rows, j].mean().detach() if rows.any() else parts.weights.new_zeros(())
            terms[f"d_{m}"] = fusion.dependence[j].detach().clone()
        return StepOutput(loss=loss, terms=terms, output=logits)


def fusion_of(model: MultimodalModel) -> UDMLFusion:
    """The model's ``udml`` fusion, or one ConfigError line."""
    fusion = model.fusion
    if not isinstance(fusion, UDMLFusion):
        raise ConfigError(
            f"method=udml needs a model with a udml fusion, got {type(fusion).__name__}: build the model from "
            "method.model_config(<model config>) (mmrobust train does)"
        )
    return fusion
