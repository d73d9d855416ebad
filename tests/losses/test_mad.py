"""Margin-aware distillation (MAD) and SP: hand-computed case, special cases, gradcheck, layouts, errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from mmrobust.losses.mad import (
    MarginAwareDistillation,
    as_samples,
    entropy_weights,
    margin_aware_distillation,
    relation_matrix,
    similarity_preserving,
)

# Student / teacher features of 3 samples; see test_hand_computed_three_samples for the arithmetic.
FS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
FT = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
# Teacher logits: samples 0 and 1 maximally uncertain (entropy ln 2), sample 2 certain (entropy ~ 0).
LOGITS = torch.tensor([[0.0, 0.0], [0.0, 0.0], [100.0, 0.0]], dtype=torch.float64)


def test_hand_computed_three_samples():
    # Ĝ_s rows: [1,0,1]/√2, [0,1,1]/√2, [1,1,2]/√6;  Ĝ_t rows: [1,1,0]/√2, [1,1,0]/√2, [0,0,1].
    # Squared differences summed per column j: 2/3, 2/3, 8/3 − 4/√6.  Weights w = [1/2, 1/2, 0].
    assert margin_aware_distillation(FS, FT, LOGITS).item() == pytest.approx(2 / 3, abs=1e-12)
    uniform = (2 / 3 + 2 / 3 + 8 / 3 - 4 / math.sqrt(6)) / 3
    assert margin_aware_distillation(FS, FT, LOGITS, weighting="uniform").item() == pytest.approx(uniform, abs=1e-12)
    # the weight multiplies column j (the sample related to), not row i: the row-weighted sum would be 1
    r2, r6 = math.sqrt(2), math.sqrt(6)
    expected_gs = torch.tensor(
        [[1 / r2, 0, 1 / r2], [0, 1 / r2, 1 / r2], [1 / r6, 1 / r6, 2 / r6]], dtype=torch.float64
    )
    torch.testing.assert_close(relation_matrix(FS), expected_gs)
    torch.testing.assert_close(entropy_weights(LOGITS.softmax(1)), torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))


def test_uniform_weights_are_similarity_preserving_kd():
    torch.manual_seed(0)
    s, t = torch.randn(8, 5, 3), torch.randn(8, 7)
    logits = torch.randn(8, 4)
    sp = similarity_preserving(s, t)
    torch.testing.assert_close(margin_aware_distillation(s, t, logits, weighting="uniform"), sp)
    # Tung & Mori's SP averages over the B² entries: ours is B times that (the MAD scale)
    tung_mori = F.mse_loss(F.normalize(s.flatten(1) @ s.flatten(1).t(), dim=1), F.normalize(t @ t.t(), dim=1))
    torch.testing.assert_close(sp, 8 * tung_mori)
    # MAD equals SP whenever the teacher is equally uncertain on every sample (equal entropies)
    equal_entropy = torch.randn(1, 4).expand(8, 4)[:, torch.randperm(4)]
    torch.testing.assert_close(margin_aware_distillation(s, t, equal_entropy), sp)
    # ... and differs otherwise
    assert not torch.isclose(margin_aware_distillation(s, t, logits), sp)


def test_zero_when_student_features_equal_teacher_features_up_to_scale():
    torch.manual_seed(1)
    f = torch.randn(6, 10)
    logits = torch.randn(6, 3)
    assert margin_aware_distillation(f, f, logits).item() == 0.0
    assert margin_aware_distillation(3.0 * f, f, logits).item() == pytest.approx(0.0, abs=1e-6)
    assert margin_aware_distillation(f, torch.randn(6, 10), logits).item() > 0.0


def test_float64_gradcheck():
    torch.manual_seed(2)
    s = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(5, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: margin_aware_distillation(a, b, logits), (s, t))
    maps = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    t_maps = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    pixel_logits = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: margin_aware_distillation(a, t_maps, pixel_logits), (maps,))


def test_pixels_as_samples_match_the_flattened_pixel_batch():
    torch.manual_seed(3)
    s, t = torch.randn(2, 3, 4, 5), torch.randn(2, 6, 4, 5)
    logits = torch.randn(2, 7, 4, 5)

    def pixels(x):
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])  # [B·H·W, C]

    torch.testing.assert_close(
        margin_aware_distillation(s, t, logits), margin_aware_distillation(pixels(s), pixels(t), pixels(logits))
    )


def test_pixel_maps_are_pooled_to_at_most_30_by_40_with_per_pixel_teacher_entropy():
    torch.manual_seed(4)
    s, t = torch.randn(1, 2, 60, 40), torch.randn(1, 2, 60, 40)
    logits = torch.randn(1, 3, 120, 80)  # the teacher's class logits at a finer resolution
    fs, ft, p = as_samples(s, t, logits)
    assert fs.shape == (30 * 40, 2) and ft.shape == (30 * 40, 2) and p.shape == (30 * 40, 3)
    torch.testing.assert_close(fs[0], s[0, :, :2, :1].mean(dim=(1, 2)))  # first pooled cell = mean of 2×1 pixels
    torch.testing.assert_close(p[0], logits.softmax(1)[0, :, :4, :2].mean(dim=(1, 2)))  # mean probability
    torch.testing.assert_close(p.sum(1), torch.ones(1200))


def test_module_matches_function_and_logits_get_no_gradient():
    torch.manual_seed(5)
    s, t = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3)
    logits = torch.randn(4, 2, requires_grad=True)
    loss = MarginAwareDistillation("entropy")(s, t, logits)
    torch.testing.assert_close(loss, margin_aware_distillation(s, t, logits))
    loss.backward()
    assert logits.grad is None and s.grad is not None


@pytest.mark.parametrize(
    ("student", "teacher", "logits", "message"),
    [
        (torch.randn(4, 3), torch.randn(5, 3), torch.randn(4, 2), "same batch size"),
        (torch.randn(4, 3), torch.randn(4, 3), torch.randn(3, 2), "same batch size"),
        (torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 2, 3), r"\[B, C\] .* or \[B, K, H, W\]"),
        (torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 2, 4, 4), "maps"),
        (torch.randn(2, 3, 4, 4), torch.randn(2, 3, 5, 4), torch.randn(2, 2, 4, 4), "same H, W"),
    ],
)
def test_shape_errors(student, teacher, logits, message):
    with pytest.raises(ValueError, match=message):
        margin_aware_distillation(student, teacher, logits)


def test_argument_errors():
    with pytest.raises(ValueError, match="unknown weighting 'rank'; valid weightings: entropy, uniform"):
        margin_aware_distillation(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 2), weighting="rank")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="relation_matrix expects features"):
        relation_matrix(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="same batch size"):
        similarity_preserving(torch.randn(2, 3), torch.randn(3, 3))
