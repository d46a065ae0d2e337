"""Meta-learning with teacher-guided adaptation (docs/method.md#meta-learning), prediction and evaluation.

Episode (one outer step):

1. for every meta-train task (one per meta-train split: the meta-batch), draw ``meta.n_query``
   students at random (a dedicated, checkpointed ``torch.Generator``);
2. *adapt*: ``meta.inner_steps`` (paper: 1) gradient steps of the MSE on the support set, which is
   ONE point -- the teacher encoded as a student (its own map as S and T, its own encoding as A,
   label = its own test accuracy). Each parameter has its own learnable inner learning rate of the
   same shape (Meta-SGD; the authors create them as ``inner_lr_init * ones_like(param)`` for every
   named parameter). The step is second order by default (``create_graph=True``: the outer gradient
   flows through the inner gradient); ``meta.second_order=false`` treats the inner gradient as a
   constant (first-order MAML; the inner rates still get a gradient);
3. MSE of the query students' predictions at the adapted parameters (``torch.func.functional_call``)
   against their recorded best accuracy, averaged over the meta-batch; one Adam step on the model
   parameters and the inner rates together.

Every ``meta.eval_every`` episodes every meta-valid and meta-test task is evaluated (adapt on its
teacher, predict all its students, Spearman / Pearson / Kendall); the model with the best mean
meta-valid Spearman is kept as ``best.pt``; ``last.pt`` (model, inner rates, optimizer, episode,
RNG state, best so far) is written at every evaluation so a killed run resumes exactly (on CPU the
resumed run equals the uninterrupted one bit for bit); ``metrics.jsonl`` gets one record per
evaluation and is truncated back to the checkpoint on resume.

``meta.adapt=false`` trains the same predictor without the inner step (plain multi-task regression:
the MetaD2A/HELP-style baseline and the "no adaptation" ablation); no inner rates exist then.

Losses are MSEs in percent squared divided by ``model.loss_scale`` (1 unless
``predictor.target_norm=meta_train``, see :mod:`dass.predictor.model`). When the meta-batch's tasks have
equal shapes (``meta.vmap_tasks``, the usual case) the per-task computation -- inner step with
``torch.func.grad``, query loss with ``functional_call`` -- runs under one ``torch.func.vmap``; the
maths is that of the per-task loop (:func:`adapt`), which remains the fallback.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.func import grad as func_grad
from torch.func import vmap
from tqdm import tqdm

from ..config import PredictorConfig, save_config, to_dict
from ..db.records import TaskRecords, TeacherRecord, load_records, task_file
from ..errors import CheckpointError, DataError
from ..io import append_jsonl, atomic_torch_save, safe_torch_load, truncate_jsonl
from ..layout import config_layout, require_same
from ..metrics import kendall, nanmean, pearson, spearman, topk_true_acc
from ..space import SearchSpace
from .model import Predictor

CKPT_VERSION = 1


# --------------------------------------------------------------------------------------------- #
# building blocks
# --------------------------------------------------------------------------------------------- #

def build_predictor(cfg, records: TaskRecords) -> Predictor:
    """A predictor sized for ``records`` (encoding length, map channels), initialised from ``meta.seed``.

    Built on the CPU inside a forked RNG so the initial weights are the same on every device and the
    caller's global RNG is untouched.
    """
    channels = int(records.fmaps.shape[1])
    if cfg.predictor.func_channels and cfg.predictor.func_channels != channels:
        raise DataError(f"task {records.task}: functional maps have {channels} channels but config key "
                        f"'predictor.func_channels' = {cfg.predictor.func_channels}; set it to 0 (auto) or {channels}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.meta.seed))
        return Predictor(cfg.predictor, int(records.arch_enc.shape[1]), channels)


def init_inner_lrs(model: torch.nn.Module, init: float, learn: bool = True) -> dict[str, torch.Tensor]:
    """One inner learning rate per parameter entry, all ``init`` at start: learnable (Meta-SGD) or, with
    ``learn=False``, the fixed scalar rate of plain MAML (``meta.learn_inner_lr``)."""
    return {name: torch.full_like(p, float(init)).detach().requires_grad_(learn)
            for name, p in model.named_parameters()}


def reset_inner_lrs(inner_lrs: dict, init: float) -> dict[str, torch.Tensor]:
    """The same entries at their initial value: what the authors' search script uses, since it rebuilds
    the Meta-SGD rates and loads only the weights (docs/method.md#search)."""
    return {k: torch.full_like(v.detach(), float(init)) for k, v in inner_lrs.items()}


def _model_device_dtype(model: torch.nn.Module):
    p = next(model.parameters())
    return p.device, p.dtype


def inner_update(model: Predictor, params: dict, inner_lrs: dict, tmap: torch.Tensor, tenc: torch.Tensor,
                 tacc: torch.Tensor, feats: Optional[torch.Tensor], steps: int, second_order: bool) -> dict:
    """The inner update of teacher-guided adaptation (docs/method.md#meta-learning), the only one.

    ``steps`` Meta-SGD steps ``p <- p - lr_p * grad_p`` of the support MSE on the one teacher point (its
    map ``tmap`` as S and T, its encoding ``tenc`` as A, its accuracy ``tacc`` as the label). ``steps=0``
    returns ``params`` unchanged: that is "no adaptation" (``meta.adapt=false``); with adaptation on,
    the config requires ``meta.inner_steps >= 1``. ``second_order`` keeps the inner gradient in the
    graph (the outer gradient flows through it); otherwise it is a constant. Written with
    ``torch.func`` so the same code runs per task and under ``vmap`` over a meta-batch.
    """
    def support_loss(p):
        pred = functional_call(model, p, (tmap.unsqueeze(0), tmap, tenc.reshape(1, -1), feats))
        return ((pred - tacc) ** 2).mean() / model.loss_scale

    for _ in range(int(steps)):
        g = func_grad(support_loss)(params)
        params = {k: params[k] - inner_lrs[k] * (g[k] if second_order else g[k].detach()) for k in params}
    return params


def adapt(model: Predictor, params: dict, inner_lrs: dict, teacher: TeacherRecord,
          dataset_feats: Optional[torch.Tensor], create_graph: bool, steps: int = 1) -> dict:
    """Teacher-guided adaptation on a task's teacher record: :func:`inner_update` (``steps`` steps; 0 =
    unchanged), second order when ``create_graph``. ``params`` maps parameter names to tensors (the
    model's own, or already adapted ones). Returns the adapted dict.
    """
    if teacher is None:
        raise DataError("teacher-guided adaptation needs the task's teacher record (support set); "
                        "rebuild the database with teacher records or set meta.adapt=false")
    device, dtype = _model_device_dtype(model)
    target = torch.tensor([float(teacher.acc)], device=device, dtype=dtype)
    feats = None if dataset_feats is None else dataset_feats.to(device, dtype)
    with torch.enable_grad():
        return inner_update(model, params, inner_lrs, teacher.fmap.to(device, dtype),
                            teacher.arch_enc.to(device, dtype), target, feats, steps, create_graph)


_adapt = adapt   # predict() has a keyword argument named ``adapt``


def _adapted_query_loss(model: Predictor, params: dict, inner_lrs: dict, tmap, tenc, tacc, fmaps, enc, acc, feats,
                        steps: int, second_order: bool) -> torch.Tensor:
    """One task's outer loss: :func:`inner_update`, then the query MSE at the adapted parameters (pure
    function of its tensors, so a meta-batch of equally shaped tasks runs under ``torch.func.vmap``)."""
    params = inner_update(model, params, inner_lrs, tmap, tenc, tacc, feats, steps, second_order)
    pred = functional_call(model, params, (fmaps, tmap, enc, feats))
    return ((pred - acc) ** 2).mean() / model.loss_scale


def _check_compatible(model: Predictor, records: TaskRecords, source: str = "predictor") -> None:
    # equal shapes are not enough: 181 entries / 256 maps of another space or noise mean other things
    require_same(getattr(model, "layout", None), records.layout, source, f"the inputs of task {records.task}",
                 "score inputs made with the configuration the predictor was trained with (or meta-train again)",
                 CheckpointError)
    e = int(records.arch_enc.shape[1])
    if e != model.enc_dim:
        raise CheckpointError(f"{source} was trained on architecture encodings of length {model.enc_dim} but task "
                              f"{records.task} has length {e}; use a checkpoint trained on this search space")
    c = int(records.fmaps.shape[1])
    if ("S" in model.inputs or "T" in model.inputs) and c != model.func_channels:
        raise CheckpointError(f"{source} was trained on {model.func_channels}-channel functional maps but task "
                              f"{records.task} has {c}; use a checkpoint trained on this search space")


def predict(model: Predictor, inner_lrs: Optional[dict], records: TaskRecords, adapt: bool = True,
            cfg=None, batch_size: int = 1024) -> torch.Tensor:
    """Predicted accuracy (percent) of every student of ``records``: CPU tensor ``[N]``.

    With ``adapt`` (and a model that has inner rates) the parameters are first adapted on the task's
    teacher; records may hold NaN accuracies (search candidates): only the teacher's is used.
    """
    _check_compatible(model, records, getattr(model, "source", "predictor"))
    device, dtype = _model_device_dtype(model)
    was_training = model.training
    model.eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    feats = None if records.dataset_features is None else records.dataset_features.to(device, dtype)
    if adapt and inner_lrs:
        steps = cfg.meta.inner_steps if cfg is not None else getattr(model, "inner_steps", 1)
        lrs = {k: v.detach().to(device) for k, v in inner_lrs.items()}
        params = {k: v.detach() for k, v in
                  _adapt(model, params, lrs, records.teacher, feats, False, steps).items()}
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
    """Ranking quality of ``scores`` against the recorded best accuracies of ``records``.

    ``top1_acc`` / ``top5_acc``: the best true accuracy among the 1 / 5 highest-scored students;
    ``best_acc``: the best true accuracy in the set. Students without an accuracy (NaN) are skipped.
    """
    s = torch.as_tensor(scores, dtype=torch.float64).flatten().cpu()
    acc = records.best_acc.to(torch.float64).flatten().cpu()
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


# --------------------------------------------------------------------------------------------- #
# checkpoints
# --------------------------------------------------------------------------------------------- #

def _meta_info(cfg) -> dict:
    return {"adapt": bool(cfg.meta.adapt), "second_order": bool(cfg.meta.second_order),
            "inner_steps": int(cfg.meta.inner_steps)}


def load_predictor(path: str | Path, device="cpu"):
    """``best.pt`` / ``last.pt`` -> ``(model, inner_lrs, meta_info)`` on ``device`` in eval mode."""
    path = Path(path)
    ck = safe_torch_load(path, what="predictor checkpoint")
    if not isinstance(ck, dict) or "model" not in ck or "spec" not in ck:
        raise CheckpointError(f"predictor checkpoint {path} lacks 'model'/'spec'; it was not written by "
                              f"main.py meta-train")
    spec = ck["spec"]
    try:
        known = {f.name for f in dataclasses.fields(PredictorConfig)}
        pcfg = PredictorConfig(**{k: v for k, v in spec["predictor"].items() if k in known})
        model = Predictor(pcfg, int(spec["enc_dim"]), int(spec["func_channels"]))
        model.set_output_norm(*[float(x) for x in spec.get("output_norm", [0.0, 1.0])])
        model.load_state_dict(ck["model"], strict=True)
    except (KeyError, TypeError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"predictor checkpoint {path} does not match its own spec ({msg}); "
                              f"re-run main.py meta-train") from None
    model.to(device).eval()
    info = dict(ck.get("meta", {}))
    model.inner_steps = int(info.get("inner_steps", 1))
    model.source = f"predictor checkpoint {path}"
    model.layout = ck.get("layout")   # dass.layout of its training files; None for older checkpoints
    lrs = {k: v.to(device) for k, v in ck.get("inner_lrs", {}).items()}
    missing = [k for k in lrs if k not in dict(model.named_parameters())]
    if missing:
        raise CheckpointError(f"predictor checkpoint {path}: inner learning rate '{missing[0]}' has no parameter")
    info.setdefault("episode", ck.get("episode"))
    return model, lrs, info


# --------------------------------------------------------------------------------------------- #
# meta-training
# --------------------------------------------------------------------------------------------- #

@dataclasses.dataclass
class _Task:
    """A task's tensors on the training device."""

    name: str
    fmaps: torch.Tensor
    arch_enc: torch.Tensor
    acc: torch.Tensor
    teacher: Optional[TeacherRecord]
    tmap: Optional[torch.Tensor]
    feats: Optional[torch.Tensor]

    @property
    def n(self) -> int:
        return int(self.acc.numel())


def _fingerprint(cfg) -> dict:
    """What a checkpoint must agree on to be resumed (not the episode count: runs may be extended)."""
    m = to_dict(cfg)["meta"]
    meta = {k: m[k] for k in ("outer_lr", "inner_lr_init", "inner_steps", "second_order", "adapt", "n_query",
                              "eval_every", "seed")}
    if not m["learn_inner_lr"]:   # recorded only when set, so earlier checkpoints still resume
        meta["learn_inner_lr"] = False
    if m["acc_type"] != "best":
        meta["acc_type"] = m["acc_type"]
    return {"predictor": to_dict(cfg)["predictor"], "meta": meta,
            "tasks": {"meta_train": list(cfg.tasks.meta_train), "meta_valid": list(cfg.tasks.meta_valid)}}


def _data_digest(tasks: list[TaskRecords]) -> str:
    """sha256 of what the predictor learns from: task names, architectures and labels. A database rebuilt
    with the same config but other content (a new task family, other KD seeds) then trains afresh."""
    h = hashlib.sha256()
    for r in tasks:
        h.update(r.task.encode())
        for t in (r.arch_enc, r.best_acc, r.final_acc):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _layout_of(tasks: list[TaskRecords]) -> Optional[dict]:
    """The input layout of the first task that declares one (dass.layout; all must agree)."""
    return next((r.layout for r in tasks if r.layout), None)


def _key(v: float) -> float:
    return -math.inf if v is None or math.isnan(v) else v


class MetaTrainer:
    """Meta-train a :class:`Predictor` (see the module docstring); ``run(resume=False) -> summary``."""

    def __init__(self, cfg, train: list[TaskRecords], valid: list[TaskRecords], test: list[TaskRecords],
                 out_dir: str | Path, device="cpu", progress: bool = True):
        if not train:
            raise DataError("meta-training needs at least one meta-train task (config key 'tasks.meta_train')")
        self.cfg, self.out_dir, self.device = cfg, Path(out_dir), torch.device(device)
        self.progress = progress
        self.valid, self.test = list(valid), list(test)
        m = cfg.meta
        first = train[0]
        self.layout = _layout_of(list(train) + self.valid + self.test)
        self.data = _data_digest(list(train) + self.valid)
        for rec in list(train) + self.valid + self.test:
            require_same(rec.layout, self.layout, f"task {rec.task}", "the other meta-training tasks",
                         "build every task's file with one configuration")
            if rec.arch_enc.shape[1] != first.arch_enc.shape[1] or rec.fmaps.shape[1:] != first.fmaps.shape[1:]:
                raise DataError(f"task {rec.task}: encodings/maps of shape {tuple(rec.arch_enc.shape[1:])}/"
                                f"{tuple(rec.fmaps.shape[1:])} differ from task {first.task}'s; all tasks must "
                                f"come from one database build")
            if m.adapt and rec.teacher is None:
                raise DataError(f"task {rec.task} has no teacher record; teacher-guided adaptation needs it "
                                f"(rebuild the database or set meta.adapt=false)")
            if "D" in cfg.predictor.inputs and rec.dataset_features is None:
                raise DataError(f"task {rec.task} has no dataset features but predictor.inputs has D; rebuild the "
                                f"database with dataset features or drop D")
        self.tasks = [self._to_device(r) for r in train]
        nq = {min(m.n_query, t.n) for t in self.tasks}
        fshape = {None if t.feats is None else tuple(t.feats.shape) for t in self.tasks}
        teachers = all(t.teacher is not None for t in self.tasks)
        self.batched = bool(m.vmap_tasks and len(nq) == 1 and len(fshape) == 1 and (teachers or not m.adapt))
        if self.batched:
            d = self.device
            self._tmaps = torch.stack([t.tmap for t in self.tasks]) if teachers else None
            self._tencs = torch.stack([t.teacher.arch_enc.float() for t in self.tasks]).to(d) if teachers else None
            self._taccs = torch.tensor([float(t.teacher.acc) for t in self.tasks], device=d) if teachers else None
            self._feats = None if self.tasks[0].feats is None else torch.stack([t.feats for t in self.tasks])
        self.model = build_predictor(cfg, first).to(self.device)
        if cfg.predictor.target_norm == "meta_train":
            accs = torch.cat([t.acc.cpu() for t in self.tasks]).double()
            self.model.set_output_norm(float(accs.mean()), max(float(accs.std()), 1e-3))
        self.inner_lrs = init_inner_lrs(self.model, m.inner_lr_init, m.learn_inner_lr) if m.adapt else {}
        learned = list(self.inner_lrs.values()) if m.learn_inner_lr else []
        self.optimizer = torch.optim.Adam(list(self.model.parameters()) + learned, lr=m.outer_lr)
        self.generator = torch.Generator().manual_seed(int(m.seed))
        self.episode = 0
        self.best = {"valid_spearman": None, "episode": None}
        self.metrics_path = self.out_dir / "metrics.jsonl"
        self.last_path = self.out_dir / "last.pt"
        self.best_path = self.out_dir / "best.pt"

    def _to_device(self, rec: TaskRecords) -> _Task:
        keep = torch.isfinite(rec.best_acc)
        if int(keep.sum()) < 2:
            raise DataError(f"meta-train task {rec.task} has fewer than 2 students with a recorded accuracy")
        d = self.device
        feats = None if rec.dataset_features is None else rec.dataset_features.float().to(d)
        tmap = None if rec.teacher is None else rec.teacher.fmap.float().to(d)
        return _Task(rec.task, rec.fmaps[keep].float().to(d), rec.arch_enc[keep].float().to(d),
                     rec.best_acc[keep].float().to(d), rec.teacher, tmap, feats)

    # ------------------------------------------------------------------------------------------
    def _train_episode(self) -> float:
        m = self.cfg.meta
        self.model.train()
        params = dict(self.model.named_parameters())
        idxs = [torch.randperm(t.n, generator=self.generator)[: m.n_query].to(self.device) for t in self.tasks]
        if self.batched:
            fm = torch.stack([t.fmaps[i] for t, i in zip(self.tasks, idxs)])
            enc = torch.stack([t.arch_enc[i] for t, i in zip(self.tasks, idxs)])
            acc = torch.stack([t.acc[i] for t, i in zip(self.tasks, idxs)])
            fdim = None if self._feats is None else 0
            tdim = None if self._tmaps is None else 0
            steps = m.inner_steps if m.adapt else 0

            def one(tm, te, ta, f, e, a, ft):
                return _adapted_query_loss(self.model, params, self.inner_lrs, tm, te, ta, f, e, a, ft,
                                           steps, m.second_order)

            losses = vmap(one, in_dims=(tdim, tdim, tdim, 0, 0, 0, fdim))(self._tmaps, self._tencs, self._taccs,
                                                                          fm, enc, acc, self._feats)
            return self._step(losses.mean())
        total = 0.0
        for t, idx in zip(self.tasks, idxs):
            p = adapt(self.model, params, self.inner_lrs, t.teacher, t.feats, create_graph=m.second_order,
                      steps=m.inner_steps) if m.adapt else params
            pred = functional_call(self.model, p, (t.fmaps[idx], t.tmap, t.arch_enc[idx], t.feats))
            total = total + F.mse_loss(pred, t.acc[idx]) / self.model.loss_scale
        return self._step(total / len(self.tasks))

    def _step(self, loss: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def evaluate(self, tasks: list[TaskRecords]) -> dict:
        """Per-task metrics of the current model (adapting on each task's teacher when meta.adapt)."""
        out = {}
        for rec in tasks:
            scores = predict(self.model, self.inner_lrs, rec, adapt=self.cfg.meta.adapt, cfg=self.cfg)
            r = evaluate_task(scores, rec)
            out[rec.task] = {k: r[k] for k in ("spearman", "pearson", "kendall")}
        return out

    def _eval_record(self, episode: int, train_losses: list[float], started: float) -> dict:
        rec: dict = {"episode": episode,
                     "train_loss": (sum(train_losses) / len(train_losses)) if train_losses else None}
        for head, tasks in (("valid", self.valid), ("test", self.test)):
            per = self.evaluate(tasks)
            rec[head] = per
            for k in ("spearman", "pearson", "kendall"):
                rec[f"{head}_{k}"] = nanmean([v[k] for v in per.values()])
        rec["seconds"] = round(time.time() - started, 3)
        return rec

    # ------------------------------------------------------------------------------------------
    def _state(self) -> dict:
        return {"version": CKPT_VERSION, "model": self.model.state_dict(),
                "inner_lrs": {k: v.detach().clone() for k, v in self.inner_lrs.items()},
                "optimizer": self.optimizer.state_dict(), "episode": self.episode,
                "generator": self.generator.get_state(), "best": dict(self.best), "spec": self.model.spec,
                "meta": _meta_info(self.cfg), "fingerprint": _fingerprint(self.cfg), "layout": self.layout,
                "data": self.data}

    def _save_best(self, valid_spearman: float) -> None:
        meta = {**_meta_info(self.cfg), "episode": self.episode, "valid_spearman": valid_spearman}
        atomic_torch_save({"version": CKPT_VERSION, "model": self.model.state_dict(),
                           "inner_lrs": {k: v.detach().clone() for k, v in self.inner_lrs.items()},
                           "spec": self.model.spec, "meta": meta, "episode": self.episode,
                           "fingerprint": _fingerprint(self.cfg), "layout": self.layout, "data": self.data},
                          self.best_path)

    def _resume(self) -> None:
        ck = safe_torch_load(self.last_path, what="meta-train checkpoint")
        if not isinstance(ck, dict) or "fingerprint" not in ck:
            raise CheckpointError(f"meta-train checkpoint {self.last_path} was not written by this version of "
                                  f"main.py meta-train; delete {self.out_dir} or choose another meta.out")
        if (ck["fingerprint"] != _fingerprint(self.cfg) or ck["spec"] != self.model.spec
                or ck.get("layout", self.layout) != self.layout or ck.get("data") != self.data):
            raise CheckpointError(f"meta-train checkpoint {self.last_path} was made with different predictor/meta "
                                  f"settings, tasks or database; resume with the same config and database or "
                                  f"choose another meta.out")
        try:
            self.model.load_state_dict(ck["model"], strict=True)
            with torch.no_grad():
                for k, v in self.inner_lrs.items():
                    v.copy_(ck["inner_lrs"][k])
            self.optimizer.load_state_dict(ck["optimizer"])
            self.generator.set_state(ck["generator"])
        except (KeyError, RuntimeError, ValueError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(f"meta-train checkpoint {self.last_path} does not fit the model ({msg}); "
                                  f"delete it to start over") from None
        self.episode = int(ck["episode"])
        self.best = dict(ck["best"])
        truncate_jsonl(self.metrics_path, lambda r: int(r.get("episode", -1)) <= self.episode)

    def summary(self) -> dict:
        return {"best_valid_spearman": self.best["valid_spearman"], "best_episode": self.best["episode"],
                "checkpoint": str(self.best_path), "last": str(self.last_path), "episode": self.episode,
                "metrics": str(self.metrics_path)}

    def run(self, resume: bool = False) -> dict:
        m = self.cfg.meta
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume and self.last_path.is_file():
            self._resume()
        else:   # a fresh run: nothing of an earlier run in this folder may be mistaken for ours
            for p in (self.metrics_path, self.last_path, self.best_path):
                p.unlink(missing_ok=True)
        save_config(self.cfg, self.out_dir)
        started = time.time()
        if self.episode == 0 and not self.metrics_path.is_file():
            append_jsonl(self.metrics_path, self._eval_record(0, [], started))   # the untrained baseline

        bar = tqdm(total=m.episodes, initial=min(self.episode, m.episodes), desc="meta-train", unit="ep",
                   disable=not self.progress or not sys.stderr.isatty(), leave=False)
        losses: list[float] = []
        while self.episode < m.episodes:
            losses.append(self._train_episode())
            self.episode += 1
            bar.update(1)
            if self.episode % m.eval_every == 0 or self.episode == m.episodes:
                rec = self._eval_record(self.episode, losses, started)
                losses = []
                # Model selection on the mean meta-valid Spearman (docs/method.md#meta-learning); without meta-valid tasks
                # the latest model is kept.
                v = rec["valid_spearman"]
                if self.best["episode"] is None or not self.valid or _key(v) > _key(self.best["valid_spearman"]):
                    self.best = {"valid_spearman": v, "episode": self.episode}
                    self._save_best(v)
                rec["best_episode"] = self.best["episode"]
                append_jsonl(self.metrics_path, rec)
                atomic_torch_save(self._state(), self.last_path)
                bar.set_postfix(loss=f"{rec['train_loss']:.3g}", va=f"{rec['valid_spearman']:.3f}",
                                te=f"{rec['test_spearman']:.3f}")
        bar.close()
        if not self.best_path.is_file():   # a finished run whose best.pt went missing: keep the last model
            self._save_best(self.best["valid_spearman"] if self.best["valid_spearman"] is not None else math.nan)
        return self.summary()


# --------------------------------------------------------------------------------------------- #
# helpers for the commands (meta-train, meta-test, search)
# --------------------------------------------------------------------------------------------- #

def load_tasks(cfg, mode: str, required: bool = True) -> list[TaskRecords]:
    """Every task of ``cfg.tasks.<mode>`` from the database at ``cfg.db.out``.

    A missing file is an error when ``required``; otherwise the task is skipped with a note (the
    meta-test tasks are only logged during meta-training).
    """
    space = SearchSpace.from_config(cfg)
    out = []
    for task in getattr(cfg.tasks, mode):
        if not required and not task_file(cfg.db.out, mode, task).is_file():
            print(f"note: {mode} task {task} is not in the database {cfg.db.out}; skipped", file=sys.stderr)
            continue
        if not task_file(cfg.db.out, mode, task).is_file():
            raise DataError(f"database file {task_file(cfg.db.out, mode, task)} does not exist; build the database "
                            f"first (main.py build-db) or fix config key 'db.out'")
        rec = with_label(load_records(cfg.db.out, mode, task, space, 0, cfg.run.allow_legacy_pickle),
                         cfg.meta.acc_type)
        rec.layout = rec.layout or config_layout(cfg)   # the authors' files carry none: the config declares it
        out.append(rec)
    return out


def with_label(records: TaskRecords, acc_type: str) -> TaskRecords:
    """Records whose label field (``best_acc``, which training and evaluation read) holds the accuracy
    chosen by ``meta.acc_type``: the best evaluation of each KD run or its final one."""
    if acc_type == "best":
        return records
    return dataclasses.replace(records, best_acc=records.final_acc.clone())


def train_or_reuse(cfg, train, valid, test, device, progress: bool = True) -> Path:
    """Meta-train into ``cfg.meta.out`` unless a finished run with the same settings is there.

    An unfinished run with the same settings is resumed; one with other settings is replaced.
    Returns the path of ``best.pt``.
    """
    out = Path(cfg.meta.out)
    last, best = out / "last.pt", out / "best.pt"
    resume = False
    if last.is_file():
        try:
            ck = safe_torch_load(last, what="meta-train checkpoint")
            layout = _layout_of(list(train) + list(valid) + list(test))
            # a database rebuilt with other inputs or other content: train again
            same = (isinstance(ck, dict) and ck.get("fingerprint") == _fingerprint(cfg)
                    and ck.get("layout", layout) == layout and ck.get("data") == _data_digest(list(train) + list(valid)))
        except CheckpointError:
            same, ck = False, None
        if same and int(ck["episode"]) >= cfg.meta.episodes and best.is_file():
            return best
        resume = same
        if not same:
            print(f"note: {out} holds a run with other settings; training it again", file=sys.stderr)
    MetaTrainer(cfg, train, valid, test, out, device, progress).run(resume=resume)
    return best
