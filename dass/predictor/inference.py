"""Scoring students with a meta-trained predictor, and how well the scores rank them.

:func:`predict` is the one path from a :class:`~dass.predictor.checkpoint.LoadedPredictor` to scores:
adapt on the task's teacher (one point, docs/method.md#meta-learning) with the settings the predictor was
trained with, then predict every student. Meta-valid during meta-training, meta-test and the search all
call it, so one checkpoint scores one pool identically everywhere.
"""
from __future__ import annotations

import torch
from torch.func import functional_call

from ..db.records import TaskRecords
from ..errors import DataError
from ..metrics import kendall, pearson, spearman, topk_true_acc
from .checkpoint import LoadedPredictor, check_compatible
from .inner import adapt


def predict(pred: LoadedPredictor, records: TaskRecords, batch_size: int = 1024) -> torch.Tensor:
    """Predicted accuracy (percent) of every student of ``records``: CPU tensor ``[N]``.

    When the predictor adapts (its settings say so and it has inner rates) its parameters are first
    adapted on the task's teacher, ``inner_steps`` steps; records may hold NaN accuracies (search
    candidates): only the teacher's accuracy is used.
    """
    check_compatible(pred, records)
    model = pred.model
    p0 = next(model.parameters())
    device, dtype = p0.device, p0.dtype
    was_training = model.training
    model.eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    feats = None if records.dataset_features is None else records.dataset_features.to(device, dtype)
    if pred.adapt:
        lrs = {k: v.detach().to(device) for k, v in pred.inner_lrs.items()}
        params = {k: v.detach() for k, v in
                  adapt(model, params, lrs, records.teacher, feats, False, pred.inner_steps).items()}
    tmap = None if records.teacher is None else records.teacher.fmap.to(device, dtype)
    out = []
    with torch.no_grad():
        for i in range(0, len(records), batch_size):
            fm = records.fmaps[i:i + batch_size].to(device, dtype)
            enc = records.arch_enc[i:i + batch_size].to(device, dtype)
            out.append(functional_call(model, params, (fm, tmap, enc, feats)).float().cpu())
    model.train(was_training)
    return torch.cat(out)


def evaluate_task(scores, records: TaskRecords) -> dict:
    """Ranking quality of ``scores`` against the labels of ``records`` (:attr:`TaskRecords.label`).

    ``top1_acc`` / ``top5_acc``: the best true accuracy among the 1 / 5 highest-scored students;
    ``best_acc``: the best true accuracy in the set. Students without an accuracy (NaN) are skipped.
    """
    s = torch.as_tensor(scores, dtype=torch.float64).flatten().cpu()
    acc = records.label.to(torch.float64).flatten().cpu()
    if s.numel() != acc.numel():
        raise DataError(f"task {records.task}: {s.numel()} scores for {acc.numel()} students")
    keep = torch.isfinite(acc)
    s, acc = s[keep], acc[keep]
    if acc.numel() == 0:
        raise DataError(f"task {records.task} has no recorded accuracy to evaluate against; meta-test needs "
                        f"KD-trained ground-truth students")
    return {"spearman": spearman(s, acc), "pearson": pearson(s, acc), "kendall": kendall(s, acc),
            "top1_acc": topk_true_acc(s, acc, 1), "top5_acc": topk_true_acc(s, acc, 5),
            "best_acc": float(acc.max()), "n": int(acc.numel())}
