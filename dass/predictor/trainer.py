"""Meta-training with teacher-guided adaptation (docs/method.md#meta-learning).

Episode (one outer step):

1. for every meta-train task (one per meta-train split: the meta-batch), draw its query students at
   random (a dedicated, checkpointed ``torch.Generator``): ``meta.n_query`` of them, or ``N - 1`` when
   the task holds no more than ``meta.n_query`` (the authors take ``randperm(N)[:n_s + n_q]`` and drop
   its first index, the support);
2. *adapt* on the task's one support point, the teacher (:mod:`dass.predictor.inner`);
3. MSE of the query students' predictions at the adapted parameters against their labels, averaged over
   the meta-batch; one Adam step on the model parameters and the inner rates together.

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
equal shapes (``meta.vmap_tasks``, the usual case) the per-task outer loss
(:func:`dass.predictor.inner.query_loss`) runs under one ``torch.func.vmap``; otherwise task by task.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from torch.func import vmap
from tqdm import tqdm

from ..config import save_config
from ..db.records import TaskRecords, TeacherRecord
from ..errors import CheckpointError, DataError
from ..io import append_jsonl, atomic_torch_save, safe_torch_load, truncate_jsonl
from ..layout import require_same
from ..metrics import nanmean
from .checkpoint import LoadedPredictor, checkpoint_dict, data_digest, layout_of, run_mismatch, settings_of
from .inference import evaluate_task, predict
from .inner import init_inner_lrs, query_loss, support_tensors
from .model import Predictor


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


def query_size(n_query: int, n: int) -> int:
    """How many query students an episode draws from a task of ``n`` (module docstring, step 1)."""
    return min(int(n_query), int(n) - 1)


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


def _key(v: float) -> float:
    return -math.inf if v is None or math.isnan(v) else v


def _check_tasks(cfg, train: list[TaskRecords], others: list[TaskRecords], layout) -> None:
    first, m = train[0], cfg.meta
    for rec in list(train) + list(others):
        require_same(rec.layout, layout, f"task {rec.task}", "the other meta-training tasks",
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
        self.layout = layout_of(list(train) + self.valid + self.test)
        self.data = data_digest(list(train) + self.valid)
        _check_tasks(cfg, train, self.valid + self.test, self.layout)
        self.tasks = [self._to_device(r) for r in train]
        self._batch_tensors()
        self.model = build_predictor(cfg, train[0]).to(self.device)
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
        keep = torch.isfinite(rec.label)
        if int(keep.sum()) < 2:
            raise DataError(f"meta-train task {rec.task} has fewer than 2 students with a recorded accuracy")
        d = self.device
        feats = None if rec.dataset_features is None else rec.dataset_features.float().to(d)
        tmap = None if rec.teacher is None else rec.teacher.fmap.float().to(d)
        return _Task(rec.task, rec.fmaps[keep].float().to(d), rec.arch_enc[keep].float().to(d),
                     rec.label[keep].float().to(d), rec.teacher, tmap, feats)

    def _batch_tensors(self) -> None:
        """The meta-batch's support points stacked for ``vmap``, when every task has the same shapes."""
        m, d = self.cfg.meta, self.device
        nq = {query_size(m.n_query, t.n) for t in self.tasks}
        fshape = {None if t.feats is None else tuple(t.feats.shape) for t in self.tasks}
        teachers = all(t.teacher is not None for t in self.tasks)
        self.batched = bool(m.vmap_tasks and len(nq) == 1 and len(fshape) == 1 and (teachers or not m.adapt))
        if self.batched:
            self._tmaps = torch.stack([t.tmap for t in self.tasks]) if teachers else None
            self._tencs = torch.stack([t.teacher.arch_enc.float() for t in self.tasks]).to(d) if teachers else None
            self._taccs = torch.tensor([float(t.teacher.acc) for t in self.tasks], device=d) if teachers else None
            self._feats = None if self.tasks[0].feats is None else torch.stack([t.feats for t in self.tasks])

    # ------------------------------------------------------------------------------------------
    def _train_episode(self) -> float:
        m = self.cfg.meta
        self.model.train()
        params = dict(self.model.named_parameters())
        idxs = [torch.randperm(t.n, generator=self.generator)[:query_size(m.n_query, t.n)].to(self.device)
                for t in self.tasks]
        steps = m.inner_steps if m.adapt else 0
        if self.batched:
            fm = torch.stack([t.fmaps[i] for t, i in zip(self.tasks, idxs)])
            enc = torch.stack([t.arch_enc[i] for t, i in zip(self.tasks, idxs)])
            acc = torch.stack([t.acc[i] for t, i in zip(self.tasks, idxs)])
            fdim = None if self._feats is None else 0
            tdim = None if self._tmaps is None else 0

            def one(tm, te, ta, f, e, a, ft):
                return query_loss(self.model, params, self.inner_lrs, tm, te, ta, f, e, a, ft, steps, m.second_order)

            losses = vmap(one, in_dims=(tdim, tdim, tdim, 0, 0, 0, fdim))(self._tmaps, self._tencs, self._taccs,
                                                                          fm, enc, acc, self._feats)
            return self._step(losses.mean())
        total = 0.0
        for t, idx in zip(self.tasks, idxs):
            tmap, tenc, tacc = support_tensors(self.model, t.teacher) if m.adapt else (t.tmap, None, None)
            total = total + query_loss(self.model, params, self.inner_lrs, tmap, tenc, tacc, t.fmaps[idx],
                                       t.arch_enc[idx], t.acc[idx], t.feats, steps, m.second_order)
        return self._step(total / len(self.tasks))

    def _step(self, loss: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def current(self) -> LoadedPredictor:
        """The model being trained, as the scorers see a loaded one (same settings, same path)."""
        return LoadedPredictor(self.model, self.inner_lrs, settings_of(self.cfg), self.layout, "meta-training")

    def evaluate(self, tasks: list[TaskRecords]) -> dict:
        """Per-task metrics of the current model (adapting on each task's teacher when meta.adapt)."""
        pred = self.current()
        out = {}
        for rec in tasks:
            r = evaluate_task(predict(pred, rec), rec)
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
        return checkpoint_dict(self.model, self.inner_lrs, self.cfg, self.layout, self.data, self.episode,
                               optimizer=self.optimizer.state_dict(), generator=self.generator.get_state(),
                               best=dict(self.best))

    def _save_best(self, valid_spearman: float) -> None:
        ck = checkpoint_dict(self.model, self.inner_lrs, self.cfg, self.layout, self.data, self.episode)
        ck["meta"].update(episode=self.episode, valid_spearman=valid_spearman)
        atomic_torch_save(ck, self.best_path)

    def _resume(self) -> None:
        ck = safe_torch_load(self.last_path, what="meta-train checkpoint")
        why = run_mismatch(ck, self.cfg, self.layout, self.data, self.model.spec)
        if why is not None:
            raise CheckpointError(f"meta-train checkpoint {self.last_path} cannot be resumed: {why}; resume with the "
                                  f"same config and database, or delete {self.out_dir} or choose another meta.out")
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
                # Model selection on the mean meta-valid Spearman (docs/method.md#meta-learning); without meta-valid
                # tasks the latest model is kept.
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


def train_or_reuse(cfg, train, valid, test, device, progress: bool = True) -> Path:
    """Meta-train into ``cfg.meta.out`` unless a finished run of this config and data is there.

    An unfinished run of this config and data is resumed; any other run there is replaced (with a note).
    Returns the path of ``best.pt``.
    """
    out = Path(cfg.meta.out)
    last, best = out / "last.pt", out / "best.pt"
    resume = False
    if last.is_file():
        try:
            ck = safe_torch_load(last, what="meta-train checkpoint")
            why = run_mismatch(ck, cfg, layout_of(list(train) + list(valid) + list(test)),
                               data_digest(list(train) + list(valid)))
        except CheckpointError as e:
            ck, why = None, str(e)
        if why is None and int(ck["episode"]) >= cfg.meta.episodes and best.is_file():
            return best
        resume = why is None
        if why is not None:
            print(f"note: {out} holds another run ({why}); training it again", file=sys.stderr)
    MetaTrainer(cfg, train, valid, test, out, device, progress).run(resume=resume)
    return best
