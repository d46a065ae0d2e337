"""Rapid distillation-aware student search on an unseen task (docs/method.md#search).

1. Candidates: the pool written by ``build-db`` or the authors' (``preprocessed/search/<task>.pt``, see
   :func:`dass.db.records.candidate_dict`), or -- for a user's
   own dataset and teacher -- computed on the fly: the same seeded candidate architectures, remapped from
   the teacher and embedded on the fixed noise (no training).
2. Adapt the meta-trained predictor on the task's teacher (one inner step on the teacher's own record:
   its map, its encoding, its test accuracy) and score every candidate.
3. Apply optional MACs / params budgets, rank, keep the top-k.

Outputs under ``search.out``: ``obtained_net_index.yaml`` in the authors' format
(``net_index: {<dataset>: {<method>: <index>}}``, merged with what is there, also with the authors' file and
its ``defaultdict`` tag), ``<task>_scores.csv`` (every
candidate: index, score, MACs, params, architecture) and ``<task>_candidates.pt`` (the candidate
architectures as a list of ``{"depth_config", "channel_widths"}`` dicts, which ``main.py kd --from-search``
reads back).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import yaml

from .config import Config, resolve_device
from .data.tasks import load_task, make_loader
from .db.build import (_dataset_features, candidate_archs, candidate_records, load_candidates,
                       search_root)
from .errors import ConfigError, DassError
from .io import atomic_torch_save, atomic_write_text, read_authors_yaml, write_csv
from .layout import config_layout
from .predictor.meta import load_predictor, predict, reset_inner_lrs
from .predictor.methods import get, score, variant_config
from .db.records import TaskRecords, candidate_file
from .space import Arch, SearchSpace
from .train.teachers import ensure_teacher, load_teacher_file
from .train.engine import evaluate


@dataclass
class SearchResult:
    task: str
    method: str
    records: TaskRecords
    scores: torch.Tensor        # N, predicted accuracy (percent) for DaSS; a score for baselines
    allowed: torch.Tensor       # N bool: inside the budgets
    ranking: list[int]          # candidate indices, best first, budget applied

    @property
    def best(self) -> int:
        return self.ranking[0]

    @property
    def best_arch(self) -> Arch:
        return self.records.archs[self.best]

    def top(self, k: int) -> list[int]:
        return self.ranking[:k]


def budget_mask(records: TaskRecords, max_macs: float = 0.0, max_params: float = 0.0) -> torch.Tensor:
    ok = torch.ones(len(records), dtype=torch.bool)
    if max_macs > 0:
        ok &= records.macs <= max_macs
    if max_params > 0:
        ok &= records.params <= max_params
    return ok


def rank(scores: torch.Tensor, allowed: torch.Tensor) -> list[int]:
    """Indices inside the budget, best score first (ties broken by index, so deterministic)."""
    idx = torch.nonzero(allowed).flatten()
    if idx.numel() == 0:
        raise DassError("no candidate fits the MACs/params budget; raise search.max_macs / search.max_params")
    s = scores[idx]
    order = sorted(range(len(idx)), key=lambda i: (-float(s[i]), int(idx[i])))
    return [int(idx[i]) for i in order]


def load_or_make_candidates(cfg: Config, task: str, teacher_path: Optional[str] = None,
                            teacher_acc: Optional[float] = None, device=None, progress: bool = True) -> TaskRecords:
    """The task's candidate pool: from ``preprocessed/search/<task>.pt`` when it exists and no other
    teacher is given, else computed on the fly from the task's data and teacher."""
    path = candidate_file(search_root(cfg), task)
    if teacher_path is None and path.is_file():
        rec = load_candidates(path, task, cfg.run.allow_legacy_pickle, cfg.db.out, SearchSpace.from_config(cfg))
        rec.layout = rec.layout or config_layout(cfg)  # the authors' pools carry none: the config declares it
        return rec

    device = device or resolve_device(cfg.run.device)
    data = load_task(task, cfg)
    if teacher_path is not None:
        teacher = load_teacher_file(cfg, teacher_path, data.num_classes, device, require_acc=False)[0]
        if teacher_acc is None:  # the support label is the teacher's own test accuracy
            teacher_acc, _ = evaluate(teacher, make_loader(data, cfg, "test", 256, device=device), device)
    else:
        teacher, teacher_acc = ensure_teacher(cfg, task, data, device, True, progress)
    return candidate_records(cfg, task, teacher, float(teacher_acc), candidate_archs(cfg), data.num_classes,
                             device, progress, _dataset_features(cfg, data))


def score_candidates(cfg: Config, records: TaskRecords, method: str = "dass",
                     checkpoint: Optional[str] = None, device=None) -> torch.Tensor:
    """DaSS scores (predicted KD accuracy after teacher-guided adaptation) or a baseline's scores."""
    if method == "dass":
        ckpt = checkpoint or str(Path(cfg.meta.out) / "best.pt")
        model, lrs, _ = load_predictor(ckpt, device or "cpu")
        if cfg.search.inner_lr == "initial":
            lrs = reset_inner_lrs(lrs, cfg.meta.inner_lr_init)
        return predict(model, lrs, records, adapt=cfg.meta.adapt, cfg=cfg).detach().cpu().float().flatten()

    if get(method).trained:   # a trained baseline: the predictor meta-test trained for it
        ckpt = checkpoint or str(Path(variant_config(cfg, method).meta.out) / "best.pt")
        if not Path(ckpt).is_file():
            raise ConfigError(f"search --method {method}: no predictor at {ckpt}; run main.py meta-test "
                              f"--baselines {method} first (it meta-trains it) or pass --checkpoint")
        return score(method, records, checkpoint=ckpt, device=device or "cpu").detach().cpu().float().flatten()
    return score(method, records, seed=cfg.run.seed).detach().cpu().float()


def run_search(cfg: Config, task: str, method: Optional[str] = None, checkpoint: Optional[str] = None,
               records: Optional[TaskRecords] = None, teacher_path: Optional[str] = None,
               teacher_acc: Optional[float] = None, write: bool = True, progress: bool = True) -> SearchResult:
    method = method or cfg.search.method
    records = records if records is not None else load_or_make_candidates(cfg, task, teacher_path, teacher_acc,
                                                                            progress=progress)
    scores = score_candidates(cfg, records, method, checkpoint)
    if scores.shape != (len(records),):
        raise DassError(f"method {method} returned {tuple(scores.shape)} scores for {len(records)} candidates")
    allowed = budget_mask(records, cfg.search.max_macs, cfg.search.max_params)
    res = SearchResult(task, method, records, scores, allowed, rank(scores, allowed))
    if write:
        write_search(cfg, res)
    return res


def write_search(cfg: Config, res: SearchResult) -> Path:
    out = Path(cfg.search.out)
    rows = []
    pos = {i: r for r, i in enumerate(res.ranking)}
    for i, a in enumerate(res.records.archs):
        rows.append({"index": res.records.net_index[i], "rank": pos.get(i, ""), "score": round(float(res.scores[i]), 4),
                     "in_budget": bool(res.allowed[i]), "macs": int(res.records.macs[i]),
                     "params": int(res.records.params[i]), "depth_config": list(a.depths),
                     "channel_widths": [list(w) for w in a.widths]})
    write_csv(out / f"{res.task}_scores.csv", rows)
    atomic_torch_save([a.to_dict() for a in res.records.archs], out / f"{res.task}_candidates.pt")
    from .db.build import net_samples_of, sync_net_samples

    sync_net_samples(cfg, net_samples_of(res.records), strict=False)  # where the authors' KD looks
    return update_obtained_index(out, res.task, res.method, res.records.net_index[res.best])


def update_obtained_index(out: str | os.PathLike, task: str, method: str, index: int) -> Path:
    """Merge one entry into ``obtained_net_index.yaml`` (authors' format) atomically."""
    path = Path(out) / "obtained_net_index.yaml"
    doc = {}
    if path.is_file():  # ours or the authors' (a yaml.dump of a defaultdict)
        doc = read_authors_yaml(path, "search result", "delete it and re-run the search") or {}
    if not isinstance(doc, dict) or not isinstance(doc.get("net_index", {}), dict):
        raise DassError(f"search result {path} is not a net_index mapping; delete it and re-run the search")
    doc.setdefault("net_index", {}).setdefault(task, {})[method] = int(index)
    atomic_write_text(path, yaml.safe_dump(doc, sort_keys=True))
    return path


def format_top(res: SearchResult, k: int) -> str:
    lines = [f"{'rank':>4}  {'index':>5}  {'score':>8}  {'MACs':>12}  {'params':>10}  architecture"]
    for r, i in enumerate(res.top(k)):
        lines.append(f"{r + 1:>4}  {res.records.net_index[i]:>5}  {float(res.scores[i]):>8.3f}  "
                     f"{int(res.records.macs[i]):>12,}  {int(res.records.params[i]):>10,}  {res.records.archs[i]}")
    return "\n".join(lines)

