"""OS-MD: one-stage modality distillation (Wei, Luo & Luo, 2023) — a privileged modality at training only.

Train with the ordinary modality ``x_o`` and the privileged ``x_p``; deploy with ``x_o`` only. ``prepare``
pretrains (or loads) a model on the ordinary modality alone and one on the privileged modality alone,
initializes φ_o and φ_s of the deployment network (:class:`~mmrobust.models.osmd_encoder.OSMDEncoder`) from
the first and keeps φ_p and its head f_p (the second, frozen). Then one stage of::

    L = η L_TTL + α L_JDN + β L_CTN,   η = 1
    L_TTL = CE(head(neck(fuse(φ_t(x_o)))), y)                    (the deployed path, x_o only)
    L_JDN = MMD²(φ_s x_o, φ_p x_p) + KL(softmax f_p(φ_p x_p) ‖ softmax f_s(φ_s x_o))
    L_CTN = MSE(T1 φ_s, T1 φ_o) + MSE(T2 φ_s, T2 φ_o)

α, β by GradNorm (``balancing: gradnorm``): each auxiliary loss puts ``target_ratio`` (0.1) times the gradient
norm of L_TTL on the shared representation φ_s(x_o) — one magnitude for both, an order below L_TTL — or
fixed (``balancing: fixed``). f_s is a linear head on φ_s, trained with the KL term (training only).

Ablations (paper Tables 4–5): ``transfer: none`` (−JDN), ``feature`` (−JDN+FKD: MSE(φ_s, φ_p)),
``relation`` (−JDN+RKD: RKD(φ_s, φ_p)); ``translator: concat`` (−CTN), ``autoencoder`` (−CTN+AE).
The translator is part of the deployed network: ``model_config`` gives every ordinary modality an ``osmd``
encoder with ``method.translator`` around its configured encoder (a config that already declares ``osmd``
encoders must name the same translator), and the run saves that config so ``mmrobust eval`` rebuilds it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmrobust.batch import Batch
from mmrobust.distributed import all_gather_with_grad, all_reduce_sum, gather_concat
from mmrobust.losses.gradnorm import GradNorm
from mmrobust.losses.kd import hint_loss, rkd_loss
from mmrobust.losses.mmd import jdn_loss
from mmrobust.methods.base import METHODS, Method, MethodContext, StepOutput, TrainState, frozen
from mmrobust.methods.privileged import pretrained_model
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.models.osmd_encoder import TRANSLATORS, OSMDEncoder, OSMDParts, plain_model
from mmrobust.registry import ConfigError
from mmrobust.roles import resolve_roles

TASK_WEIGHTS = {"transfer": "alpha", "translation": "beta"}


class JointDistribution(nn.Module):
    """JDN: ``{mmd: MMD²(φ_s, φ_p), kl: KL(p_p ‖ softmax f_s(φ_s))}`` with the hallucination head f_s.

    f_s is the task's probe head: pooled + linear for classification (``[B, C]``); a 1×1 convolution for
    segmentation, whose dense logits are resized bilinearly to the privileged model's (per-pixel KL)."""

    def __init__(self, head: nn.Module, kernel_num: int, kernel_mul: float) -> None:
        super().__init__()
        self.head = head  # f_s
        self.kernel_num, self.kernel_mul = kernel_num, kernel_mul

    def forward(self, hallucinated: torch.Tensor, privileged: torch.Tensor, logits: torch.Tensor) -> dict[str, Any]:
        own = self.head(hallucinated)  # [B, C] or [B, K, h, w]
        if own.dim() == 4 and own.shape[-2:] != logits.shape[-2:]:
            own = F.interpolate(own, size=logits.shape[-2:], mode="bilinear", align_corners=False)
        mmd, kl = jdn_loss(hallucinated, privileged, own, logits, self.kernel_num, self.kernel_mul)
        return {"mmd": mmd, "kl": kl}


class FeatureTransfer(nn.Module):
    """−JDN+FKD: ``{hint: MSE(φ_s, φ_p)}``."""

    def forward(self, hallucinated: torch.Tensor, privileged: torch.Tensor, logits: torch.Tensor) -> dict[str, Any]:
        return {"hint": hint_loss(hallucinated, privileged)}


class RelationTransfer(nn.Module):
    """−JDN+RKD: ``{rkd: RKD(φ_s, φ_p)}`` (distance and angle terms, Park et al. weights)."""

    def forward(self, hallucinated: torch.Tensor, privileged: torch.Tensor, logits: torch.Tensor) -> dict[str, Any]:
        return {"rkd": rkd_loss(hallucinated, privileged)}


TRANSFERS = ("jdn", "feature", "relation", "none")


@METHODS.register("osmd")
class OSMD(Method):
    """One-stage modality distillation; see the module docstring.

    Args:
        context: the run.
        ordinary: deployed modalities (default: the first modality); each gets an OS-MD encoder.
        privileged: the one training-only modality (default: the first modality that is not ordinary).
        transfer: privileged knowledge transfer: ``jdn`` | ``feature`` | ``relation`` | ``none``.
        translator: ``ctn`` | ``concat`` | ``autoencoder`` (must match the model's ``osmd`` encoders).
        balancing: ``gradnorm`` | ``fixed``.
        alpha, beta: the weights of L_JDN and L_CTN (fixed), or GradNorm's initial weights.
        target_ratio: GradNorm's target gradient-norm ratio of each auxiliary loss to L_TTL.
        asymmetry: GradNorm's exponent on the relative inverse training rate.
        gradnorm_lr: GradNorm's step on the log-weights.
        kernel_num, kernel_mul: the MMD kernels.
        pretrain_epochs: epochs of the two pretrainings (default: trainer.max_epochs).
        ordinary_checkpoint, privileged_checkpoint: load the pretrained models instead of training them
            (checkpoints of models of this run's architecture with plain encoders, e.g. ``ordinary_only``
            and ``full`` runs).
    """

    def __init__(
        self,
        context: MethodContext,
        ordinary: list[str] | None = None,
        privileged: list[str] | None = None,
        transfer: str = "jdn",
        translator: str = "ctn",
        balancing: str = "gradnorm",
        alpha: float = 0.1,
        beta: float = 0.1,
        target_ratio: float = 0.1,
        asymmetry: float = 0.0,
        gradnorm_lr: float = 0.025,
        kernel_num: int = 5,
        kernel_mul: float = 2.0,
        pretrain_epochs: int | None = None,
        ordinary_checkpoint: str | None = None,
        privileged_checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        self.roles = resolve_roles(context.modalities, ordinary, privileged)
        if len(self.roles.privileged) != 1:
            raise ConfigError(
                f"method.privileged: osmd needs exactly one privileged modality, got {list(self.roles.privileged)}"
            )
        for key, value, valid in (
            ("transfer", transfer, TRANSFERS),
            ("balancing", balancing, ("gradnorm", "fixed")),
            ("translator", translator, tuple(TRANSLATORS.names())),
        ):
            if value not in valid:
                raise ConfigError(f"method.{key}: unknown value {value!r}; valid: {list(valid)}")
        self.context = context
        self.task = context.task
        self.transfer_name, self.translator = transfer, translator
        self.balancing, self.fixed = balancing, {"transfer": alpha, "translation": beta}
        self.gradnorm = {"ratio": target_ratio, "asymmetry": asymmetry, "lr": gradnorm_lr}
        self.kernels = (kernel_num, kernel_mul)
        self.pretrain_epochs = pretrain_epochs
        self.checkpoints = {"ordinary": ordinary_checkpoint, "privileged": privileged_checkpoint}
        self.privileged_model: MultimodalModel | None = None
        self.transfer: nn.Module | None = None
        self.balancer: GradNorm | None = None
        self.tasks: list[str] = []

    def deployed_modalities(self) -> tuple[str, ...]:
        return self.roles.ordinary

    # ------------------------------------------------------------------------------------------ setup
    def model_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Declare the deployment network: the encoder of every ordinary modality becomes
        ``{name: osmd, encoder: <its spec>, translator: method.translator}``; an ``osmd`` encoder already in
        ``config`` is kept (it must name the same translator). An ``architecture`` config is left as it is
        (``prepare`` then refuses one that fuses inside its encoders)."""
        config = dict(config)
        if "architecture" in config:
            return config
        overrides = dict(config.get("encoders") or {})
        for m in self.roles.ordinary:
            spec = dict(overrides.get(m) or config.get("encoder") or {})
            if spec.get("name") == "osmd":
                translator = spec.get("translator", "ctn")
                if translator != self.translator:
                    raise ConfigError(
                        f"method.translator is {self.translator!r} but model.encoders.{m} uses {translator!r}; "
                        f"set translator: ${{method.translator}} in the model (or drop the osmd encoder: osmd adds it)"
                    )
            elif "name" in spec:  # without a name, build_model reports the missing key
                overrides[m] = {"name": "osmd", "encoder": spec, "translator": self.translator}
        if overrides:
            config["encoders"] = overrides
        return config

    def prepare(self, model: MultimodalModel) -> None:
        """Pretrain (or load) the ordinary and the privileged networks; initialize φ_o and φ_s from the first,
        freeze the second. ``model`` is built from ``model_config`` (osmd encoders for the ordinary modalities)."""
        if getattr(model, "fusion_inside_encoders", False):
            raise ConfigError(
                f"method=osmd hallucinates and compares per-modality encoder features (JDN/CTN), but "
                f"{type(model).__name__} fuses inside its encoders; use a late-fusion model (e.g. model=seg_small)"
            )
        roles, p = self.roles, self.roles.privileged[0]
        for m in roles.ordinary:
            encoder = model.encoders[m]
            if not isinstance(encoder, OSMDEncoder):
                raise ConfigError(
                    f"method=osmd: model.encoders.{m} is a {type(encoder).__name__}, not an osmd encoder; build the "
                    f"model from method.model_config(<model config>) (mmrobust train does)"
                )
            if encoder.translator_name != self.translator:
                raise ConfigError(
                    f"method.translator is {self.translator!r} but model.encoders.{m} uses "
                    f"{encoder.translator_name!r}; set translator: ${{method.translator}} in the model"
                )
        nets = {
            role: pretrained_model(
                self.context,
                f"pretrain_{role}",
                subset,
                plain_model(self.context.build_model()),
                self.checkpoints[role],
                self.pretrain_epochs,
            )
            for role, subset in (("ordinary", roles.ordinary_subset), ("privileged", roles.privileged_subset))
        }
        for m in roles.ordinary:
            model.encoders[m].load_pretrained(nets["ordinary"].encoders[m])  # type: ignore[operator]
        self.privileged_model = frozen(nets["privileged"])  # type: ignore[assignment]
        shape = nets["privileged"].feature_shapes[p]
        if self.transfer_name in ("jdn", "feature") and any(model.feature_shapes[m] != shape for m in roles.ordinary):
            raise ConfigError(
                f"osmd transfer {self.transfer_name!r} compares φ_s(x_o) with φ_p(x_p): the encoders "
                f"of {list(roles.ordinary)} and {p!r} need one feature shape, got "
                f"{[model.feature_shapes[m] for m in roles.ordinary]} and {shape}"
            )
        self.transfer = self.build_transfer(shape)
        translates = any(model.encoders[m].translator.has_loss for m in roles.ordinary)  # type: ignore[union-attr]
        self.tasks = [t for t, on in (("transfer", self.transfer is not None), ("translation", translates)) if on]
        if self.balancing == "gradnorm" and self.tasks:
            g = self.gradnorm
            self.balancer = GradNorm(
                len(self.tasks),
                [self.fixed[t] for t in self.tasks],
                [g["ratio"]] * len(self.tasks),
                g["asymmetry"],
                g["lr"],
            )

    def build_transfer(self, feature_shape: tuple[int, ...]) -> nn.Module | None:
        """The module of the configured transfer task (None for ``none``)."""
        if self.transfer_name == "jdn":
            return JointDistribution(self.task.probe_head(feature_shape[0]), *self.kernels)
        if self.transfer_name == "feature":
            return FeatureTransfer()
        if self.transfer_name == "relation":
            return RelationTransfer()
        return None

    # --------------------------------------------------------------------------------------- training
    def forward(self, model: MultimodalModel, batch: Batch, state: TrainState) -> StepOutput:
        if self.privileged_model is None:
            raise RuntimeError("osmd: call prepare(model) before training")
        deployed = batch.restrict(self.roles.ordinary_subset)  # what the deployed model sees
        keep = deployed.present.any(dim=1)  # [B]
        if not bool(keep.any()):
            raise ValueError("no sample of this batch has an ordinary modality; the deployed model has no input")
        present = deployed.present.any(dim=0).tolist()
        parts: dict[str, OSMDParts] = {
            m: model.encoders[m].parts(deployed.inputs[m])  # type: ignore[operator]
            for j, m in enumerate(model.modalities)
            if m in self.roles.ordinary and present[j]
        }
        fused = model.fuse({m: part.output for m, part in parts.items()}, deployed.present)
        logits = model.head(model.neck(fused))  # [B, C]
        target_loss = self.task.loss(logits[keep], batch.target[keep])
        terms = {"ce": target_loss.detach()}
        aux = {}
        if "transfer" in self.tasks:
            aux["transfer"] = self.transfer_loss(model, parts, batch, terms)
        if "translation" in self.tasks:
            aux["translation"] = self.translation_loss(model, parts, deployed, terms)
        weights = self.weights(aux, target_loss, [part.hallucinated for part in parts.values()], terms)
        loss = target_loss + sum((weights[t] * aux[t] for t in self.tasks), torch.zeros_like(target_loss))
        return StepOutput(loss=loss, terms=terms, output=logits)

    def transfer_loss(
        self, model: MultimodalModel, parts: dict[str, OSMDParts], batch: Batch, terms: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """The transfer loss between φ_s(x_o) and the frozen φ_p(x_p), on the samples that have both.

        MMD and RKD compare samples with each other, so a distributed run computes the transfer on the global
        batch: each process's rows are gathered (φ_s with gradients, the frozen φ_p and f_p without), and every
        decision is taken on global counts, so all processes run the same collectives.
        """
        assert self.privileged_model is not None and self.transfer is not None
        net, p = self.privileged_model, self.roles.privileged[0]
        jp = model.modalities.index(p)
        ordinary = [m for m in model.modalities if m in self.roles.ordinary]
        rows = {m: batch.present[:, jp] & batch.present[:, model.modalities.index(m)] for m in ordinary}  # [B] each
        counts = all_reduce_sum(torch.stack([r.sum() for r in rows.values()]))  # global samples with both
        used = [m for m, n in zip(ordinary, counts.tolist()) if n >= 2]
        losses = []
        if used:
            with torch.no_grad():
                z_p = net.encoders[p](batch.inputs[p])  # φ_p(x_p) [B, *F]
                only = torch.zeros_like(batch.present)
                only[:, jp] = batch.present[:, jp]
                logits_p = net.head(net.neck(net.fuse({p: z_p}, only)))  # f_p(φ_p(x_p)) [B, C]
            anchor = next(iter(parts.values())).hallucinated
            for m in used:
                r = rows[m]
                # a process without m still joins the gather, with zero rows tied to its graph (same backward)
                empty = anchor.flatten()[:0].view(0, *model.feature_shapes[m])
                mine = parts[m].hallucinated[r] if m in parts else empty
                named = self.transfer(all_gather_with_grad(mine), gather_concat(z_p[r]), gather_concat(logits_p[r]))
                for k, v in named.items():
                    terms[k] = terms.get(k, 0.0) + v.detach() / len(used)
                losses.append(sum(named.values()))
        total = torch.stack(losses).mean() if losses else torch.zeros((), device=batch.target.device)
        terms["transfer"] = total.detach()
        return total

    def translation_loss(
        self, model: MultimodalModel, parts: dict[str, OSMDParts], deployed: Batch, terms: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """``Σ_pairs MSE(translated, target)`` per ordinary modality, averaged over them."""
        losses = []
        for m, part in parts.items():
            rows = deployed.present[:, model.modalities.index(m)]
            losses.append(sum(F.mse_loss(a[rows], b[rows]) for a, b in part.translation.pairs))
        total = torch.stack(losses).mean()  # type: ignore[arg-type]
        terms["translation"] = total.detach()
        return total

    def weights(
        self,
        aux: dict[str, torch.Tensor],
        target_loss: torch.Tensor,
        shared: list[torch.Tensor],
        terms: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor | float]:
        """α, β for this step (fixed, or GradNorm's, which it then updates); logged as terms."""
        weights: dict[str, torch.Tensor | float] = {t: self.fixed[t] for t in self.tasks}
        if self.balancer is not None:
            step = self.balancer([aux[t] for t in self.tasks], shared, anchor=target_loss)
            weights = dict(zip(self.tasks, step.weights))
            for t, ratio in zip(self.tasks, step.ratios):
                terms[f"gradnorm_ratio_{t}"] = ratio.detach()
        for t in self.tasks:
            terms[TASK_WEIGHTS[t]] = torch.as_tensor(weights[t]).detach()
        return weights
