"""The inner update of teacher-guided adaptation (docs/method.md#meta-learning), the only one.

The support set of a task is ONE point: the teacher encoded as a student (its own map as S and T, its
own encoding as A, labelled with its own test accuracy). Each parameter has its own inner learning rate
of the same shape (Meta-SGD; the authors create them as ``inner_lr_init * ones_like(param)`` for every
named parameter). Written with ``torch.func`` so the same code adapts one task, runs under ``vmap`` over
a meta-batch (:mod:`dass.predictor.trainer`) and adapts an unseen task before scoring
(:mod:`dass.predictor.inference`).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch.func import functional_call
from torch.func import grad as func_grad

from ..db.records import TeacherRecord
from ..errors import DataError
from .model import Predictor


def init_inner_lrs(model: torch.nn.Module, init: float, learn: bool = True) -> dict[str, torch.Tensor]:
    """One inner learning rate per parameter entry, all ``init`` at start: learnable (Meta-SGD) or, with
    ``learn=False``, the fixed scalar rate of plain MAML (``meta.learn_inner_lr``)."""
    return {name: torch.full_like(p, float(init)).detach().requires_grad_(learn)
            for name, p in model.named_parameters()}


def reset_inner_lrs(inner_lrs: dict, init: float) -> dict[str, torch.Tensor]:
    """The same entries at their initial value: what the authors' search script uses, since it rebuilds
    the Meta-SGD rates and loads only the weights (docs/method.md#search)."""
    return {k: torch.full_like(v.detach(), float(init)) for k, v in inner_lrs.items()}


def inner_update(model: Predictor, params: dict, inner_lrs: dict, tmap: torch.Tensor, tenc: torch.Tensor,
                 tacc: torch.Tensor, feats: Optional[torch.Tensor], steps: int, second_order: bool) -> dict:
    """``steps`` Meta-SGD steps ``p <- p - lr_p * grad_p`` of the support MSE on the one teacher point (its
    map ``tmap`` as S and T, its encoding ``tenc`` as A, its accuracy ``tacc`` as the label).

    ``steps=0`` returns ``params`` unchanged: that is "no adaptation" (``meta.adapt=false``); with
    adaptation on, the config requires ``meta.inner_steps >= 1``. ``second_order`` keeps the inner gradient
    in the graph (the outer gradient flows through it); otherwise it is a constant (first-order MAML; the
    inner rates still get a gradient).
    """
    def support_loss(p):
        pred = functional_call(model, p, (tmap.unsqueeze(0), tmap, tenc.reshape(1, -1), feats))
        return ((pred - tacc) ** 2).mean() / model.loss_scale

    for _ in range(int(steps)):
        g = func_grad(support_loss)(params)
        params = {k: params[k] - inner_lrs[k] * (g[k] if second_order else g[k].detach()) for k in params}
    return params


def support_tensors(model: Predictor, teacher: Optional[TeacherRecord]) -> tuple[torch.Tensor, ...]:
    """A task's support point on the model's device and dtype: ``(map, encoding, accuracy)``."""
    if teacher is None:
        raise DataError("teacher-guided adaptation needs the task's teacher record (support set); "
                        "rebuild the database with teacher records or set meta.adapt=false")
    p = next(model.parameters())
    return (teacher.fmap.to(p.device, p.dtype), teacher.arch_enc.to(p.device, p.dtype),
            torch.tensor([float(teacher.acc)], device=p.device, dtype=p.dtype))


def adapt(model: Predictor, params: dict, inner_lrs: dict, teacher: TeacherRecord,
          dataset_feats: Optional[torch.Tensor], create_graph: bool, steps: int = 1) -> dict:
    """Teacher-guided adaptation on a task's teacher record: :func:`inner_update` (``steps`` steps; 0 =
    unchanged), second order when ``create_graph``. ``params`` maps parameter names to tensors (the
    model's own, or already adapted ones). Returns the adapted dict."""
    tmap, tenc, tacc = support_tensors(model, teacher)
    p = next(model.parameters())
    feats = None if dataset_feats is None else dataset_feats.to(p.device, p.dtype)
    with torch.enable_grad():
        return inner_update(model, params, inner_lrs, tmap, tenc, tacc, feats, steps, create_graph)


def query_loss(model: Predictor, params: dict, inner_lrs: dict, tmap, tenc, tacc, fmaps, enc, acc, feats,
               steps: int, second_order: bool) -> torch.Tensor:
    """One task's outer loss: :func:`inner_update`, then the query students' MSE at the adapted parameters,
    in the head's units. A pure function of its tensors, so a meta-batch of equally shaped tasks runs it
    under ``torch.func.vmap`` and any other meta-batch task by task, with the same maths."""
    params = inner_update(model, params, inner_lrs, tmap, tenc, tacc, feats, steps, second_order)
    pred = functional_call(model, params, (fmaps, tmap, enc, feats))
    return ((pred - acc) ** 2).mean() / model.loss_scale
