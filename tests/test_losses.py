"""Training criteria (docs/method.md#teachers, #kd): the KD loss and label-smoothed cross-entropy."""
import math

import pytest
import torch
import torch.nn.functional as F

from dass.train.losses import kd_loss, label_smoothed_ce, soft_cross_entropy


def _logits(seed, n=6, k=5, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * scale


def test_kd_loss_golden_value():
    # uniform student and teacher over 2 classes: CE = soft CE = ln 2
    s, t, y = torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([0])
    got = kd_loss(s, t, y, temperature=6.0, alpha=0.5)
    assert got.item() == pytest.approx(0.5 * math.log(2) + 0.5 * 36 * math.log(2), rel=1e-6)  # 18.5 ln 2
    assert got.item() == pytest.approx(12.82322, abs=1e-4)


@pytest.mark.parametrize("T,alpha", [(6.0, 0.5), (1.0, 0.3), (4.0, 0.0), (2.0, 1.0)])
def test_kd_loss_is_ce_plus_kl_plus_teacher_entropy(T, alpha):
    s, t = _logits(0), _logits(1)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    pt = F.softmax(t / T, dim=1)
    kl = F.kl_div(F.log_softmax(s / T, dim=1), pt, reduction="batchmean")     # KL(teacher || student)
    ent = -(pt * pt.log()).sum(1).mean()                                     # H(teacher)
    want = alpha * F.cross_entropy(s, y) + (1 - alpha) * T ** 2 * kl + (1 - alpha) * T ** 2 * ent
    assert kd_loss(s, t, y, T, alpha).item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)


def test_kd_loss_gradients_match_kl_form_and_teacher_gets_none():
    T, alpha = 6.0, 0.5
    s1 = _logits(2).requires_grad_()
    s2 = s1.detach().clone().requires_grad_()
    t = _logits(3).requires_grad_()
    y = torch.tensor([4, 3, 2, 1, 0, 1])
    kd_loss(s1, t, y, T, alpha).backward()
    kl = F.kl_div(F.log_softmax(s2 / T, dim=1), F.softmax(t.detach() / T, dim=1), reduction="batchmean")
    (alpha * F.cross_entropy(s2, y) + (1 - alpha) * T ** 2 * kl).backward()
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-5, atol=1e-7)
    assert s1.grad.abs().sum() > 0
    assert t.grad is None  # the teacher is a constant


def test_kd_loss_is_batch_mean_and_extremes():
    s, t = _logits(4, n=8), _logits(5, n=8)
    y = torch.arange(8) % 5
    full = kd_loss(s, t, y, 6.0, 0.5)
    halves = (kd_loss(s[:4], t[:4], y[:4], 6.0, 0.5) + kd_loss(s[4:], t[4:], y[4:], 6.0, 0.5)) / 2
    assert full.item() == pytest.approx(halves.item(), rel=1e-6)
    assert kd_loss(s, t, y, 6.0, 1.0).item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-6)
    assert kd_loss(s, t, y, 6.0, 0.0).item() == pytest.approx(36 * soft_cross_entropy(s, t, 6.0).mean().item(),
                                                              rel=1e-6)
    # a student equal to the teacher still pays the teacher's entropy in the soft term
    assert kd_loss(t, t, y, 6.0, 0.0).item() > 0


def test_kd_loss_runs_in_float32_on_bf16_logits():
    s, t = _logits(6).bfloat16(), _logits(7).bfloat16()
    out = kd_loss(s, t, torch.zeros(6, dtype=torch.long), 6.0, 0.5)
    assert out.dtype == torch.float32
    ref = kd_loss(s.float(), t.float(), torch.zeros(6, dtype=torch.long), 6.0, 0.5)
    assert out.item() == pytest.approx(ref.item(), rel=1e-6)


def test_label_smoothed_ce_matches_explicit_soft_targets():
    x = _logits(8, n=7, k=4)
    y = torch.tensor([0, 1, 2, 3, 3, 2, 1])
    eps = 0.1
    q = F.one_hot(y, 4).float() * (1 - eps) + eps / 4   # the authors' smoothed targets
    want = -(q * F.log_softmax(x, 1)).sum(1).mean()
    assert label_smoothed_ce(x, y, eps).item() == pytest.approx(want.item(), rel=1e-6)
    assert label_smoothed_ce(x, y, 0.0).item() == pytest.approx(F.cross_entropy(x, y).item(), rel=1e-6)
    # golden: uniform logits over K classes give ln K whatever the smoothing
    assert label_smoothed_ce(torch.zeros(3, 4), torch.tensor([0, 1, 2]), 0.1).item() == pytest.approx(math.log(4))
    # smoothing penalises a confident correct prediction
    sharp = torch.tensor([[10.0, 0.0, 0.0, 0.0]])
    assert label_smoothed_ce(sharp, torch.tensor([0]), 0.1) > label_smoothed_ce(sharp, torch.tensor([0]), 0.0)
