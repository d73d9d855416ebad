"""MultimodalModel: per-modality encoders, a fusion, a neck and a head, with public stages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mmrobust.batch import Batch
from mmrobust.models.encoders import ENCODERS
from mmrobust.models.fusion import FUSIONS
from mmrobust.models.heads import HEADS
from mmrobust.models.necks import NECKS
from mmrobust.registry import ConfigError


class MultimodalModel(nn.Module):
    """encode -> fuse -> neck -> head.

    Args:
        encoders: one encoder per modality, keyed by modality name.
        fusion: ``fusion(feats, present)`` takes the per-modality features in ``modalities`` order (absent
            ones zeroed) and the availability mask ``[B, M]`` (see ``models/fusion.py``).
        neck, head: applied to the fused representation.
        modalities: the modality order (columns of ``Batch.present``).
        feature_shapes: per-modality feature shape without the batch dimension (used to zero-fill
            the features of modalities whose encoder was skipped).

    ``fusion_inside_encoders`` is False: fusion happens after the encoders, so an evaluator may encode
    once and fuse once per subset.
    """

    fusion_inside_encoders = False

    def __init__(
        self,
        encoders: nn.ModuleDict,
        fusion: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        modalities: tuple[str, ...],
        feature_shapes: Mapping[str, tuple[int, ...]],
    ) -> None:
        super().__init__()
        if set(encoders.keys()) != set(modalities):
            raise ValueError(f"encoders {sorted(encoders.keys())} do not match modalities {list(modalities)}")
        self.encoders = encoders
        self.fusion = fusion
        self.neck_module = neck
        self.head_module = head
        self.modalities = tuple(modalities)
        self.feature_shapes = {m: tuple(s) for m, s in feature_shapes.items()}

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-modality features; each encoder runs on the samples that have its modality, and only on them.

        For modality ``m`` with ``n`` of the ``B`` samples present (column ``j`` of ``batch.present``):

        - ``n = 0``: the encoder is skipped and ``m`` is left out of the result (``fuse`` zero-fills it);
        - ``n = B``: ``f_m = encoder_m(x_m)`` on the whole batch;
        - otherwise ``f_m[r] = encoder_m(x_m[r])`` for the present rows ``r`` (gathered with ``index_select``)
          and ``f_m[b] = 0`` for the absent ones (scattered with ``index_copy``). ``fuse`` zeroes the features
          of absent samples anyway, so the encoder's work on them was wasted: with per-sample modality dropout
          over 3 modalities each encoder runs on about 4/7 of the batch.

        In eval mode the result equals the full-batch computation on the present rows (up to float rounding:
        a smaller batch may take another kernel) and is 0 on the others. In train mode, BatchNorm layers of
        the encoder normalize with (and update their running statistics from) the present samples only, not
        the whole batch as when the encoder also ran on dropped or missing samples; the absent rows get no
        gradient and, through the batch statistics, no longer influence the present rows' gradients.
        With fewer than 2 present rows in train mode the encoder runs on the whole batch (as before this
        change), since a BatchNorm1d cannot normalize a single sample.

        Shape: inputs[m] ``[B, *in_shape]`` -> ``{m: [B, *feature_shapes[m]]}`` for every ``m`` present in
        at least one sample.
        """
        present = batch.present
        size = present.shape[0]
        counts = present.sum(dim=0).tolist()  # [M] present samples per modality (one host sync)
        features: dict[str, torch.Tensor] = {}
        for j, (m, n) in enumerate(zip(self.modalities, counts)):
            if n == 0:
                continue
            encoder, x = self.encoders[m], batch.inputs[m]
            if n == size or (n < 2 and encoder.training):
                features[m] = encoder(x)
                continue
            rows = present[:, j].nonzero().flatten().to(x.device)  # [n]
            f = encoder(x.index_select(0, rows))  # [n, *F]
            features[m] = f.new_zeros(size, *f.shape[1:]).index_copy(0, rows, f)  # [B, *F]
        return features

    def fuse(self, features: Mapping[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """Zero the feature of every absent modality per sample, then fuse: ``fusion(feats, present)``.

        Zeroing selects with ``torch.where`` (not a multiplication by the mask), so a non-finite feature of
        an absent modality cannot leak into the fused representation (``NaN · 0 = NaN``). The fusion also gets
        the mask (as bool on the features' device; a modality missing from ``features`` is absent for every
        sample), so a mask-aware fusion (e.g. ``mean``) can weigh the modalities each sample has.

        Shape: features[m] ``[B, *feature_shapes[m]]``, present ``[B, M]`` -> ``[B, D]``.
        """
        feats = []
        for j, m in enumerate(self.modalities):
            if m in features:
                f = features[m]
                keep = present[:, j].to(device=f.device, dtype=torch.bool).view(-1, *([1] * (f.dim() - 1)))
                feats.append(torch.where(keep, f, torch.zeros((), dtype=f.dtype, device=f.device)))
            else:  # the encoder was skipped (absent from the whole batch): zero features of the recorded shape
                ref = next(iter(features.values()), None)
                like = ref if ref is not None else next(self.fusion.parameters(), present.float())
                feats.append(like.new_zeros(len(present), *self.feature_shapes[m]))
        skipped = torch.tensor([m not in features for m in self.modalities], device=feats[0].device)  # [M]
        mask = present.to(device=feats[0].device, dtype=torch.bool) & ~skipped  # [B, M]
        return self.fusion(feats, mask)

        return self.fusion(feats, mask)

    def fuse_subsets(
        self, features: Mapping[str, torch.Tensor], present: torch.Tensor, subset_masks: torch.Tensor
    ) -> torch.Tensor:
        """``fuse`` for S subsets of one batch in one call: the rows of ``fuse(features, present ∧ subset_masks[s])``,
        stacked subset-major as ``out[s·B + b]``. Equal to the per-subset calls in eval mode; in train mode the
        S·B rows share dropout draws and BatchNorm statistics as one batch.

        A fusion with a ``fuse_subsets(feats, masks)`` method (``masks [S, B, M]``; e.g. ``concat_mlp``, which
        shares its first layer's per-modality products across subsets) gets the features once, unzeroed (zeros
        for a modality skipped for the whole batch), and selects them itself; any other fusion gets the
        features repeated S times along the batch and the stacked masks, through ``fuse`` (as does a subclass
        that overrides ``fuse``).

        Shape: features[m] ``[B, *feature_shapes[m]]``, present ``[B, M]``, subset_masks ``[S, M]`` -> ``[S·B, D]``.
        """
        ref = next(iter(features.values()), None)
        device = ref.device if ref is not None else present.device
        s, b = len(subset_masks), len(present)
        keep = present.to(device=device, dtype=torch.bool)  # [B, M]
        masks = keep.unsqueeze(0) & subset_masks.to(device=device, dtype=torch.bool).unsqueeze(1)  # [S, B, M]
        fuse_subsets = getattr(self.fusion, "fuse_subsets", None)
        if not callable(fuse_subsets) or type(self).fuse is not MultimodalModel.fuse:  # a subclass's fuse is kept
            stacked = {m: f.repeat(s, *([1] * (f.dim() - 1))) for m, f in features.items()}  # [S·B, ...]
            return self.fuse(stacked, masks.reshape(s * b, -1))
        like = ref if ref is not None else next(self.fusion.parameters(), present.float())
        feats = [features[m] if m in features else like.new_zeros(b, *self.feature_shapes[m]) for m in self.modalities]
        skipped = torch.tensor([m not in features for m in self.modalities], device=device)  # [M]
        return fuse_subsets(feats, masks & ~skipped)

    def neck(self, fused: torch.Tensor) -> torch.Tensor:
        return self.neck_module(fused)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_module(x)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Logits ``[B, num_classes]`` of the batch as it is (its own ``present`` mask)."""
        return self.head(self.neck(self.fuse(self.encode(batch), batch.present)))


def build_model(
    config: Mapping[str, Any],
    modalities: tuple[str, ...],
    input_shapes: Mapping[str, tuple[int, ...]],
    num_classes: int,
    input_kinds: Mapping[str, str] | None = None,
) -> MultimodalModel:
    """Build a model from a config with keys ``encoder`` (default for every modality), ``encoders``
    (per-modality overrides), ``fusion``, ``neck`` and ``head``; each a dict with ``name`` plus options.
    A config with the key ``architecture`` builds that whole model instead (``models/architectures.py``).
    A config with the key ``auto`` (``model=auto``) first chooses each modality's encoder from its input shape
    and ``input_kinds`` hint (``image``/``audio``/``vector``, e.g. from the reader type): ``models/auto.py``.
    """
    config = dict(config)
    if "auto" in config:
        from mmrobust.models.auto import resolve_auto  # here: auto builds models with this function

        config = resolve_auto(config, modalities, input_shapes, input_kinds).config
    if "architecture" in config:
        from mmrobust.models.architectures import ARCHITECTURES  # here: architectures import this module

        options = {k: v for k, v in config.items() if k != "architecture"}
        shapes = {m: tuple(input_shapes[m]) for m in modalities}
        return ARCHITECTURES.build(
            str(config["architecture"]), options, where="model", modalities=modalities, input_shapes=shapes,
            num_classes=num_classes,
        )  # fmt: skip
    unknown = set(config) - {"encoder", "encoders", "fusion", "neck", "head"}
    if unknown:
        raise ConfigError(
            f"model: unknown keys {sorted(unknown)}; accepted keys: encoder, encoders, fusion, neck, head"
        )
    overrides = dict(config.get("encoders") or {})
    stray = set(overrides) - set(modalities)
    if stray:
        raise ConfigError(f"model.encoders: {sorted(stray)} are not modalities of this dataset {list(modalities)}")
    encoders = nn.ModuleDict()
    for m in modalities:
        spec = dict(overrides.get(m) or config.get("encoder") or {})
        where = f"model.encoders.{m}" if m in overrides else "model.encoder"
        encoders[m] = ENCODERS.build(_name(spec, where), spec, where=where, in_shape=tuple(input_shapes[m]))
    feature_shapes = _feature_shapes(encoders, modalities, input_shapes)
    fusion_spec = dict(config.get("fusion") or {"name": "concat"})
    fusion = FUSIONS.build(
        _name(fusion_spec, "model.fusion"),
        fusion_spec,
        where="model.fusion",
        feature_shapes=[feature_shapes[m] for m in modalities],
    )
    neck_spec = dict(config.get("neck") or {"name": "identity"})
    neck = NECKS.build(_name(neck_spec, "model.neck"), neck_spec, where="model.neck", in_features=fusion.out_features)
    head_spec = dict(config.get("head") or {"name": "linear"})
    head = HEADS.build(
        _name(head_spec, "model.head"),
        head_spec,
        where="model.head",
        in_features=neck.out_features,
        num_classes=num_classes,
    )
    return MultimodalModel(encoders, fusion, neck, head, modalities, feature_shapes)


def _name(spec: dict[str, Any], where: str) -> str:
    if "name" not in spec:
        raise ConfigError(f"{where}.name: required key is missing")
    return str(spec.pop("name"))


@torch.no_grad()
def _feature_shapes(
    encoders: nn.ModuleDict, modalities: tuple[str, ...], input_shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, tuple[int, ...]]:
    """Per-modality feature shapes, from one forward of a 2-sample zero batch in eval mode."""
    shapes = {}
    for m in modalities:
        enc = encoders[m]
        was_training = enc.training
        enc.eval()
        try:
            shapes[m] = tuple(enc(torch.zeros(2, *input_shapes[m])).shape[1:])
        except RuntimeError as error:
            raise ConfigError(
                f"model.encoder for {m!r} cannot take inputs of shape {tuple(input_shapes[m])}: {error}"
            ) from error
        enc.train(was_training)
    return shapes
