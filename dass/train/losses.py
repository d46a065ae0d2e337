"""Training criteria: label-smoothed cross-entropy for teachers, the KD loss for students.

See docs/method.md#teachers and #kd.

Both are computed in float32 whatever the autocast dtype of the logits: under bf16 autocast a
softmax over a few hundred classes loses too much precision, and the cast is free next to the
network. Every loss is averaged over the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def label_smoothed_ce(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """Cross-entropy against ``(1 - eps) * one_hot + eps / K`` targets (docs/method.md#teachers).

    The authors smooth the one-hot target this way (uniform mass ``eps/K`` on *every* class,
    including the true one), which is exactly ``F.cross_entropy(label_smoothing=eps)``.
    """
    return F.cross_entropy(logits.float(), labels, label_smoothing=float(smoothing))


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       temperature: float) -> torch.Tensor:
    """Per-sample ``-sum_k softmax(t/T)_k * log_softmax(s/T)_k`` (no batch reduction)."""
    t = float(temperature)
    target = F.softmax(teacher_logits.detach().float() / t, dim=1)
    return -(target * F.log_softmax(student_logits.float() / t, dim=1)).sum(dim=1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            temperature: float = 6.0, alpha: float = 0.5) -> torch.Tensor:
    """The distillation loss of docs/method.md#kd, averaged over the batch:

    ``alpha * CE(s, y) + (1 - alpha) * T^2 * softCE(softmax(t/T), log_softmax(s/T))``.

    The soft term is a cross-entropy, not a KL divergence: it equals ``KL(p_t || p_s) + H(p_t)``.
    ``H(p_t)`` does not depend on the student, so gradients are those of the KL form, but the
    *value* (what gets logged and recorded as ``final_loss``) includes the teacher's entropy, as in
    the authors' release. The ``T^2`` factor keeps the soft gradients' scale independent of ``T``.
    The teacher is treated as a constant (its logits are detached).
    """
    a = float(alpha)
    hard = F.cross_entropy(student_logits.float(), labels)
    soft = soft_cross_entropy(student_logits, teacher_logits, temperature).mean()
    return a * hard + (1.0 - a) * float(temperature) ** 2 * soft
