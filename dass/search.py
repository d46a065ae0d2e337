"""Rapid distillation-aware student search on an unseen task (docs/method.md#search), and its files.

This module owns everything of the search: the candidate pools (:func:`build_candidates`, written by
``build-db``; :func:`load_candidates`, ours or the authors'), the ranking under budgets, its output
files, and their reader (:func:`arch_from_search`, used by ``main.py kd --from-search``).

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
reads back through :func:`arch_from_search`; when the authors' search wrote only the index, it is
resolved through ``net_info/net_samples.pt``, as their KD script does).
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import yaml
from tqdm.auto import tqdm

from .config import Config, resolve_device
from .data.tasks import load_task
from .db.inputs import task_dataset_features, teacher_record
from .db.records import (TaskRecords, TeacherRecord, candidate_dict, candidate_file, dict_to_records,
                         load_teacher_record, nest_for_authors, net_samples_file, records_to_dict, save_teacher_record,
                         search_dir, teacher_file, teacher_record_dict)
from .embed import noise_input, student_map
from .errors import ConfigError, DassError, DataError
from .fastembed import auto_workers, remapped_maps_parallel
from .io import atomic_torch_save, atomic_write_text, read_authors_yaml, read_json, safe_torch_load, write_csv, write_json
from .layout import config_layout
from .seeds import stable_seed
from .metrics import rank_desc
from .predictor.checkpoint import LoadedPredictor, load_predictor
from .predictor.methods import ensemble, get, method_runs, run_config, score
from .space import Arch, SearchSpace
from .students import arch_from_entry
from .train.teachers import ensure_teacher, load_user_teacher

# --------------------------------------------------------------------------------------------- #
# candidate pools (written by build-db, read by the search)
# --------------------------------------------------------------------------------------------- #

def search_root(cfg: Config) -> Path:
    """``preprocessed/search`` next to ``preprocessed/ours`` (docs/method.md#file-formats)."""
    return search_dir(cfg.db.out)


def candidate_archs(cfg: Config) -> list[Arch]:
    space = SearchSpace.from_config(cfg)
    return space.sample_many(cfg.db.num_candidates, rng=stable_seed("candidates", cfg.db.candidate_seed),
                             unique=True)


def candidate_records(cfg: Config, task: str, teacher, acc: float, archs: list[Arch], num_classes: int,
                      device=None, progress: bool = False, dataset_features=None) -> TaskRecords:
    """Encodings, functional maps, MACs and params of candidates (no accuracies: NaN)."""
    space = SearchSpace.from_config(cfg)
    device = device or next(teacher.parameters()).device
    noise = noise_input(space.image_size, cfg.embed.num_noise, cfg.embed.noise_seed, device)
    channels = space.stage_widths[cfg.embed.stage - 1]
    teacher.eval()
    if cfg.kd.remap == "random":
        fmaps = [student_map(teacher, a, noise, cfg.kd.remap, cfg.embed.stage, channels,
                             seed=stable_seed("init", task, i))
                 for i, a in enumerate(tqdm(archs, desc=f"embed {task}", unit="cand", disable=not progress))]
    else:
        # shares the computation of candidates with a common block prefix; bit-identical to student_map
        workers = auto_workers(cfg.embed.workers, len(archs), device)
        fmaps = list(remapped_maps_parallel(teacher, archs, noise, cfg.kd.remap, cfg.embed.stage, channels,
                                            workers, progress, f"embed {task}"))
    n = len(archs)
    nan = torch.full((n,), math.nan)
    return TaskRecords(task=task, archs=list(archs), arch_enc=torch.stack([space.encode(a) for a in archs]),
                       fmaps=torch.stack(fmaps), best_acc=nan.clone(), final_acc=nan.clone(), final_loss=nan.clone(),
                       macs=torch.tensor([float(space.macs(a, num_classes=num_classes)) for a in archs]),
                       params=torch.tensor([float(space.params(a, num_classes)) for a in archs]),
                       net_index=list(range(n)), teacher=teacher_record(cfg, teacher, acc, noise),
                       dataset_features=dataset_features, layout=config_layout(cfg))


def build_candidates(cfg: Config, tasks: Optional[list[str]] = None, device=None, progress: bool = True,
                     log: Callable[[str], None] = print) -> list[Path]:
    """Write ``search/<dataset>.pt`` (authors' keys, NaN accuracies) for each meta-test dataset, plus
    ``search/net_samples.pt``: ``[(macs, params, depth_config, channel_widths), ...]`` (docs/method.md#file-formats)."""
    device = device or resolve_device(cfg.run.device)
    archs = candidate_archs(cfg)
    root = search_root(cfg)
    space = SearchSpace.from_config(cfg)
    samples = [(space.macs(a), space.params(a), list(a.depths), [list(w) for w in a.widths]) for a in archs]
    atomic_torch_save(samples, root / "net_samples.pt")
    out = []
    for task in tasks if tasks is not None else cfg.tasks.meta_test:
        path = candidate_file(root, task)
        if path.is_file():
            out.append(path)
            continue
        sync_net_samples(cfg, samples)  # before any pool is written: the two must agree
        data = load_task(task, cfg)
        teacher, acc = ensure_teacher(cfg, task, data, device, True, progress)
        rec = candidate_records(cfg, task, teacher, acc, archs, data.num_classes, device, progress,
                                task_dataset_features(cfg, data))
        d = records_to_dict(rec)
        d["teacher"] = teacher_record_dict(rec.teacher, rec.layout)
        atomic_torch_save(nest_for_authors(d), path)
        if not teacher_file(cfg.db.out, "meta_test", task).is_file():  # where the authors' search reads it
            save_teacher_record(rec.teacher, task, cfg.db.out, "meta_test", rec.layout)
        out.append(path)
    log(f"[build-db] search candidates ({len(archs)} per dataset) under {root}")
    return out


def sync_net_samples(cfg: Config, samples: list, strict: bool = True) -> None:
    """``net_info/net_samples.pt``, through which the authors' KD script resolves a searched index. One that
    is there already (e.g. the authors' own) is never overwritten: when it lists other candidates, that is
    an error (``strict``) or a note on stderr."""
    path = net_samples_file(cfg.db.out)
    if not path.is_file():
        atomic_torch_save(samples, path)
        return
    if _same_candidates(safe_torch_load(path, cfg.run.allow_legacy_pickle, what="candidate list"), samples):
        return
    msg = f"{path} lists other candidates than this pool and is not overwritten"
    if strict:
        raise DassError(f"{msg}: move it away, or search the pool it belongs to")
    print(f"note: {msg}; the authors' KD script would resolve this search's index there to another student, "
          f"use `main.py kd --from-search`", file=sys.stderr)


def net_samples_of(records: TaskRecords) -> list:
    """The authors' candidate list ``[(macs, params, depth_config, channel_widths), ...]`` of a pool."""
    return [(int(m), int(p), list(a.depths), [list(w) for w in a.widths])
            for m, p, a in zip(records.macs.tolist(), records.params.tolist(), records.archs)]


def _same_candidates(there, samples: list) -> bool:
    """Both list the same architectures in the same order (MACs/params may be counted differently)."""
    try:
        return [tuple(e[2:4]) for e in there] == [tuple(e[2:4]) for e in samples]
    except (TypeError, KeyError):
        return False


def load_candidates(path: str | os.PathLike, task: str, allow_pickle: bool = False,
                    db_out: Optional[str | os.PathLike] = None, space: Optional[SearchSpace] = None) -> TaskRecords:
    """A search pool, ours or the authors' (docs/method.md#authors-compat). Its teacher support record is
    the pool's ``teacher`` entry (ours) or ``<db_out>/meta_test/teacher/<task>-logs_noise_actmap.pt``
    (where the authors' search reads it)."""
    d = safe_torch_load(path, allow_pickle, what="search candidates")
    samples = None if db_out is None else net_samples_file(db_out)
    d = candidate_dict(d, str(path), lambda: safe_torch_load(samples, allow_pickle, "candidate list")
                       if samples is not None and samples.is_file() else None)
    rec = dict_to_records(d, task, str(path), space)
    if "teacher" in d:
        t = dict_to_records(d["teacher"], task, str(path))
        rec.teacher = TeacherRecord(t.archs[0], t.arch_enc[0], t.fmaps[0], float(t.best_acc[0]))
    elif db_out is not None and teacher_file(db_out, "meta_test", task).is_file():
        rec.teacher = load_teacher_record(db_out, "meta_test", task, allow_pickle, rec.layout)
    else:
        where = teacher_file(db_out or "preprocessed/ours", "meta_test", task)
        raise DassError(f"search candidates {path} carry no teacher record and {where} does not exist; download "
                        f"the authors' preprocessed/ folder or rebuild the pool with main.py build-db")
    return rec


@dataclass
class SearchResult:
    task: str
    method: str
    records: TaskRecords
    scores: torch.Tensor        # N, predicted accuracy (percent) for DaSS; a score for baselines
    allowed: torch.Tensor       # N bool: inside the budgets
    ranking: list[int]          # candidate indices, best first, budget applied
    teacher_path: Optional[str] = None   # the user's teacher the pool was embedded with (None: the task's own)

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
    """Indices inside the budget, best score first, with :func:`dass.metrics.rank_desc`'s tie rule."""
    idx = torch.nonzero(allowed).flatten()
    if idx.numel() == 0:
        raise DassError("no candidate fits the MACs/params budget; raise search.max_macs / search.max_params")
    return [int(idx[i]) for i in rank_desc(scores[idx])]


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
    if teacher_path is not None:   # the support label is the teacher's own test accuracy
        teacher, teacher_acc = load_user_teacher(cfg, teacher_path, data, device, teacher_acc)
    else:
        teacher, teacher_acc = ensure_teacher(cfg, task, data, device, True, progress)
    return candidate_records(cfg, task, teacher, float(teacher_acc), candidate_archs(cfg), data.num_classes,
                             device, progress, task_dataset_features(cfg, data))


def method_predictors(cfg, method: str, checkpoint=None, device="cpu") -> list[LoadedPredictor]:
    """The predictors a trained method scores with in the search: ``checkpoint`` (a path, or a list of them),
    else every run of the method there is (:func:`dass.predictor.methods.method_runs`: the committed ones,
    its meta-training seeds, or its one run), with the inner rates reset when ``search.inner_lr=initial``
    (the authors' search). Empty for a proxy."""
    if not get(method).trained:
        return []
    given = [checkpoint] if isinstance(checkpoint, (str, os.PathLike)) else list(checkpoint or [])
    paths = [Path(p) for p in given] or method_runs(cfg, method)
    if not paths or not all(p.is_file() for p in paths):
        where = ", ".join(map(str, paths)) or str(Path(run_config(cfg, method).meta.out) / "best.pt")
        how = "main.py meta-train" if method == "dass" else f"main.py meta-test --baselines {method}"
        raise ConfigError(f"search --method {method}: no predictor at {where}; run {how} first (it meta-trains it) "
                          f"or pass --checkpoint")
    preds = [load_predictor(p, device, cfg.run.allow_legacy_pickle) for p in paths]
    return [p.with_initial_inner_lrs() for p in preds] if cfg.search.inner_lr == "initial" else preds


def score_candidates(cfg: Config, records: TaskRecords, method: str = "dass",
                     checkpoint=None, device=None) -> torch.Tensor:
    """Every candidate's score under ``method``, through the registry (:func:`dass.predictor.methods.score`),
    the same call meta-test makes: predicted KD accuracy for one trained predictor, the seed ensemble
    (mean standardised score, :func:`dass.predictor.methods.ensemble`) when the method has several runs, a
    proxy's score otherwise."""
    preds = method_predictors(cfg, method, checkpoint, device or "cpu")
    if len(preds) > 1:
        return ensemble(torch.stack([score(method, records, predictor=p) for p in preds]))
    p = preds[0] if preds else None
    return score(method, records, predictor=p, seed=cfg.run.seed).detach().cpu().double().flatten()


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
    res = SearchResult(task, method, records, scores, allowed, rank(scores, allowed),
                       str(Path(teacher_path).resolve()) if teacher_path is not None else None)
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
    # which teacher this search adapted on, so `kd --from-search` distils from the same one
    teacher = res.records.teacher
    write_json(out / f"{res.task}_search.json", {
        "task": res.task, "method": res.method, "index": res.records.net_index[res.best],
        "teacher": res.teacher_path, "teacher_acc": None if teacher is None else float(teacher.acc)})

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


# --------------------------------------------------------------------------------------------- #
# reading a finished search: the student ``kd --from-search`` distils
# --------------------------------------------------------------------------------------------- #

def searched_teacher(cfg, task: str, acc: Optional[float] = None) -> tuple[Optional[str], Optional[float]]:
    """``(path, accuracy)`` of the user's teacher the last search of ``task`` adapted on (``None`` path: the
    task's own teacher under ``run.checkpoint_dir``); ``acc``, when given, overrides the recorded accuracy."""
    p = Path(cfg.search.out) / f"{task}_search.json"
    rec = read_json(p, what="search summary") if p.is_file() else {}
    path = rec.get("teacher") if isinstance(rec, dict) else None
    if path is not None and not Path(path).is_file():
        raise DataError(f"search summary {p} names the teacher {path}, which no longer exists; pass --teacher")
    return path, acc if acc is not None or path is None else rec.get("teacher_acc")


def arch_from_search(cfg, task: str, method: str) -> tuple[Arch, int]:
    """The searched student of ``task`` by ``method`` (contract in the module docstring)."""
    out = Path(cfg.search.out)
    ypath = out / "obtained_net_index.yaml"
    # ours is plain YAML; the authors' is a yaml.dump of a defaultdict (docs/method.md#authors-compat)
    doc = read_authors_yaml(ypath, "search result", f"run `python main.py search --task {task}` first")
    try:
        index = doc["net_index"][task][method]
    except (KeyError, TypeError):
        raise DataError(f"search result {ypath} has no net_index.{task}.{method}; run the search for this task "
                        f"and method (or pass --method)") from None
    if isinstance(index, bool) or not isinstance(index, int):
        raise DataError(f"search result {ypath}: net_index.{task}.{method} must be an integer, got {index!r}")
    cpath = out / f"{task}_candidates.pt"
    if not cpath.is_file():  # the authors' search writes only the index; their KD resolves it here
        cpath = net_samples_file(cfg.db.out)
        if not cpath.is_file():
            raise DataError(f"neither {out / f'{task}_candidates.pt'} nor {cpath} exists to resolve the searched "
                            f"index {index}; re-run `python main.py search --task {task}`")
    cands = safe_torch_load(cpath, allow_pickle=cfg.run.allow_legacy_pickle, what="search candidates file")
    if not isinstance(cands, (list, tuple)) or not 0 <= index < len(cands):
        n = len(cands) if isinstance(cands, (list, tuple)) else "no"
        raise DataError(f"search candidates file {cpath} has {n} candidates but the search picked index {index}; "
                        f"re-run the search")
    return arch_from_entry(cands[index], f"{cpath} entry {index}"), index
