"""Predictor checkpoints: what they hold, the loaded predictor, and the authors' state-dict layout.

A checkpoint (``best.pt`` / ``last.pt`` of a meta-training run) holds the model's weights and its
``spec`` (everything needed to rebuild the exact module), the Meta-SGD inner rates, the *settings* that
decide how it adapts and predicts (``adapt``, ``second_order``, ``inner_steps``, ``inner_lr_init``), the
input layout of its training files (:mod:`dass.layout`), a *fingerprint* of the settings a resume must
agree on and a sha256 of the data it learned from. :func:`load_predictor` turns one into a
:class:`LoadedPredictor`, the one object every scorer (meta-test, search, the notebook) adapts and
predicts with, so a checkpoint ranks the same students the same way wherever it is used.

Version 2 concatenates the encoded inputs in the authors' order, S | A | T (then D); version 1 files
(S | T | A | D) are converted on load by permuting the head's input columns. :func:`to_authors` and
:func:`from_authors` convert to and from the authors' ``model_best.pth.tar`` (``state_dict`` with
``func_encoder`` / ``teacher_encoder`` / ``arch_encoder`` / ``proj_layers``; their inner rates are not
saved, so a converted predictor adapts with every rate at its initial value, as their search does).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path
from typing import Optional

import torch

from ..config import PredictorConfig, to_dict
from ..db.records import TaskRecords
from ..errors import CheckpointError
from ..io import safe_torch_load
from ..layout import require_same
from .inner import init_inner_lrs, reset_inner_lrs
from .model import CONCAT_ORDER, Predictor

CKPT_VERSION = 2                      # 2: the head reads S | A | T | D; 1: S | T | A | D
_V1_ORDER = ("S", "T", "A", "D")
# our module names -> the authors' (dass/predictor/model.py vs their predictor.py)
_AUTHORS_NAMES = (("student_encoder.", "func_encoder."), ("teacher_encoder.", "teacher_encoder."),
                  ("arch_encoder.", "arch_encoder."), ("head.", "proj_layers."))


@dataclasses.dataclass
class LoadedPredictor:
    """A meta-trained predictor ready to score: the module, its inner rates, how it adapts, its layout."""

    model: Predictor
    inner_lrs: dict
    settings: dict                    # adapt, second_order, inner_steps, inner_lr_init (+ episode, valid_spearman)
    layout: Optional[dict] = None     # dass.layout of its training files; None = unknown (older or the authors')
    source: str = "predictor"

    @property
    def adapt(self) -> bool:
        return bool(self.settings.get("adapt", True)) and bool(self.inner_lrs)

    @property
    def inner_steps(self) -> int:
        return int(self.settings.get("inner_steps", 1))

    def with_initial_inner_lrs(self) -> "LoadedPredictor":
        """Every inner rate back at its initial value (``search.inner_lr=initial``, the authors' search)."""
        init = float(self.settings.get("inner_lr_init", 0.005))
        return dataclasses.replace(self, inner_lrs=reset_inner_lrs(self.inner_lrs, init))


def settings_of(cfg) -> dict:
    """The settings a predictor adapts and predicts with, as a checkpoint records them."""
    m = cfg.meta
    return {"adapt": bool(m.adapt), "second_order": bool(m.second_order), "inner_steps": int(m.inner_steps),
            "inner_lr_init": float(m.inner_lr_init)}


def fingerprint(cfg) -> dict:
    """What a checkpoint must agree on to be resumed or reused (not the episode count: runs may be extended)."""
    m = to_dict(cfg)["meta"]
    meta = {k: m[k] for k in ("outer_lr", "inner_lr_init", "inner_steps", "second_order", "adapt", "n_query",
                              "eval_every", "seed")}
    if not m["learn_inner_lr"]:   # recorded only when set, so earlier checkpoints still resume
        meta["learn_inner_lr"] = False
    if m["acc_type"] != "best":
        meta["acc_type"] = m["acc_type"]
    return {"predictor": to_dict(cfg)["predictor"], "meta": meta,
            "tasks": {"meta_train": list(cfg.tasks.meta_train), "meta_valid": list(cfg.tasks.meta_valid)}}


def data_digest(tasks: list[TaskRecords]) -> str:
    """sha256 of what the predictor learns from: task names, architectures and labels. A database rebuilt
    with the same config but other content (a new task family, other KD seeds) then trains afresh."""
    h = hashlib.sha256()
    for r in tasks:
        h.update(r.task.encode())
        for t in (r.arch_enc, r.best_acc, r.final_acc):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def layout_of(tasks: list[TaskRecords]) -> Optional[dict]:
    """The input layout of the first task that declares one (dass.layout; all must agree)."""
    return next((r.layout for r in tasks if r.layout), None)


def run_mismatch(ck, cfg, layout: Optional[dict], data: str, spec: Optional[dict] = None) -> Optional[str]:
    """Why the run in checkpoint ``ck`` is not this one (other settings, spec, layout or data), or None."""
    if not isinstance(ck, dict) or "fingerprint" not in ck:
        return "it was not written by this version of meta-train"
    if ck.get("version", 1) != CKPT_VERSION:
        return f"it is a version {ck.get('version', 1)} checkpoint (this code writes version {CKPT_VERSION})"
    if ck["fingerprint"] != fingerprint(cfg):
        return "its predictor/meta settings or tasks differ"
    if spec is not None and ck.get("spec") != spec:
        return "its model spec differs"
    if ck.get("layout", layout) != layout:
        return "its input layout differs"
    if ck.get("data") != data:
        return "it learned from other database content"
    return None


def checkpoint_dict(model: Predictor, inner_lrs: dict, cfg, layout, data: str, episode: int, **extra) -> dict:
    """The common part of ``best.pt`` and ``last.pt``."""
    return {"version": CKPT_VERSION, "model": model.state_dict(),
            "inner_lrs": {k: v.detach().clone() for k, v in inner_lrs.items()}, "spec": model.spec,
            "meta": settings_of(cfg), "episode": int(episode), "fingerprint": fingerprint(cfg), "layout": layout,
            "data": data, **extra}


# --------------------------------------------------------------------------------------------- #
# loading
# --------------------------------------------------------------------------------------------- #

def _permute_head(state: dict, inputs, widths: dict, old, new) -> dict:
    """The head's input columns reordered from concatenation order ``old`` to ``new``."""
    spans, start = {}, 0
    for x in (i for i in old if i in inputs):
        spans[x] = (start, start + widths[x])
        start += widths[x]
    w = state["head.0.weight"]
    state = dict(state)
    state["head.0.weight"] = torch.cat([w[:, slice(*spans[x])] for x in new if x in inputs], dim=1)
    return state


def _input_widths(pcfg: PredictorConfig) -> dict:
    return {"S": pcfg.func_dim, "T": pcfg.func_dim, "A": pcfg.arch_dim, "D": pcfg.dataset_dim}


def _new(pcfg: PredictorConfig, enc_dim: int, func_channels: int) -> Predictor:
    """A module to load weights into; its throw-away initialisation leaves the caller's RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        return Predictor(pcfg, int(enc_dim), int(func_channels))


def _build(spec: dict, path) -> Predictor:
    known = {f.name for f in dataclasses.fields(PredictorConfig)}
    pcfg = PredictorConfig(**{k: v for k, v in spec["predictor"].items() if k in known})
    model = _new(pcfg, spec["enc_dim"], spec["func_channels"])
    model.set_output_norm(*[float(x) for x in spec.get("output_norm", [0.0, 1.0])])
    return model


def load_predictor(path: str | Path, device="cpu", allow_pickle: bool = False) -> LoadedPredictor:
    """``best.pt`` / ``last.pt`` (ours) or the authors' ``model_best.pth.tar`` -> a :class:`LoadedPredictor` on
    ``device`` in eval mode."""
    path = Path(path)
    ck = safe_torch_load(path, allow_pickle, what="predictor checkpoint")
    if isinstance(ck, dict) and "state_dict" in ck and "model" not in ck:
        return from_authors(ck, path, device)
    if not isinstance(ck, dict) or "model" not in ck or "spec" not in ck:
        raise CheckpointError(f"predictor checkpoint {path} lacks 'model'/'spec'; it was not written by "
                              f"meta-train (nor is it the authors' model_best.pth.tar)")
    try:
        model = _build(ck["spec"], path)
        state = ck["model"]
        if ck.get("version", 1) == 1:   # written before the head read the authors' order
            state = _permute_head(state, model.inputs, _input_widths(model.pcfg), _V1_ORDER, CONCAT_ORDER)
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"predictor checkpoint {path} does not match its own spec ({msg}); "
                              f"re-run meta-train") from None
    model.to(device).eval()
    lrs = {k: v.to(device) for k, v in ck.get("inner_lrs", {}).items()}
    missing = [k for k in lrs if k not in dict(model.named_parameters())]
    if missing:
        raise CheckpointError(f"predictor checkpoint {path}: inner learning rate '{missing[0]}' has no parameter")
    settings = {"adapt": True, "second_order": True, "inner_steps": 1, **dict(ck.get("meta", {}))}
    settings.setdefault("episode", ck.get("episode"))
    return LoadedPredictor(model, lrs, settings, ck.get("layout"), f"predictor checkpoint {path}")


def check_compatible(pred: LoadedPredictor, records: TaskRecords) -> None:
    """Refuse to score inputs of another layout, encoding length or map width than the predictor's."""
    model = pred.model
    # equal shapes are not enough: 181 entries / 256 maps of another space or noise mean other things
    require_same(pred.layout, records.layout, pred.source, f"the inputs of task {records.task}",
                 "score inputs made with the configuration the predictor was trained with (or meta-train again)",
                 CheckpointError)
    e = int(records.arch_enc.shape[1])
    if "A" in model.inputs and e != model.enc_dim:
        raise CheckpointError(f"{pred.source} was trained on architecture encodings of length {model.enc_dim} but "
                              f"task {records.task} has length {e}; use a checkpoint trained on this search space")
    c = int(records.fmaps.shape[1])
    if ("S" in model.inputs or "T" in model.inputs) and c != model.func_channels:
        raise CheckpointError(f"{pred.source} was trained on {model.func_channels}-channel functional maps but task "
                              f"{records.task} has {c}; use a checkpoint trained on this search space")


# --------------------------------------------------------------------------------------------- #
# the authors' layout
# --------------------------------------------------------------------------------------------- #

def to_authors(pred: LoadedPredictor, valid_spearman: Optional[float] = None) -> dict:
    """Our predictor as the authors' ``model_best.pth.tar`` dict (their module names; ``min_info`` holds the
    meta-valid Spearman their model selection used). Only S, T and A exist in their predictor, and their
    head regresses raw percent."""
    model = pred.model
    if "D" in model.inputs or model.out_shift != 0.0 or model.out_scale != 1.0:
        raise CheckpointError(f"{pred.source} has a D input or normalised targets, which the authors' predictor "
                              f"cannot hold; convert an S/T/A predictor trained with predictor.target_norm=none")
    state = {}
    for k, v in model.state_dict().items():
        for ours, theirs in _AUTHORS_NAMES:
            if k.startswith(ours):
                state[theirs + k[len(ours):]] = v.detach().cpu().clone()
    vs = pred.settings.get("valid_spearman") if valid_spearman is None else valid_spearman
    return {"epoch": int(pred.settings.get("episode") or 0), "state_dict": state,
            "min_info": {"va_spearmanr": float("nan") if vs is None else float(vs)}}


def from_authors(ck: dict, path, device="cpu") -> LoadedPredictor:
    """The authors' ``model_best.pth.tar`` (``state_dict`` of their ``PredictorModel``) as a predictor: the
    sizes come from the tensor shapes, the inputs from the modules present, the inner rates at 0.005."""
    sd = ck["state_dict"]
    if not isinstance(sd, dict) or "proj_layers.0.weight" not in sd:
        raise CheckpointError(f"predictor checkpoint {path} has a 'state_dict' without 'proj_layers.0.weight'; it "
                              f"is not the authors' predictor")
    state = {}
    for k, v in sd.items():
        k = k[len("module."):] if k.startswith("module.") else k
        for ours, theirs in _AUTHORS_NAMES:
            if k.startswith(theirs):
                state[ours + k[len(theirs):]] = v
    inputs = [x for x, key in (("S", "student_encoder.conv1.weight"), ("T", "teacher_encoder.conv1.weight"),
                               ("A", "arch_encoder.fc.weight")) if key in state]
    try:
        conv1 = state.get("student_encoder.conv1.weight", state.get("teacher_encoder.conv1.weight"))
        conv2 = state.get("student_encoder.conv2.weight", state.get("teacher_encoder.conv2.weight"))
        arch = state.get("arch_encoder.fc.weight")
        pcfg = PredictorConfig(inputs=inputs, func_hidden=int(conv1.shape[0]) if conv1 is not None else 128,
                               func_dim=int(conv2.shape[0]) if conv2 is not None else 256,
                               arch_dim=int(arch.shape[0]) if arch is not None else 64,
                               head_hidden=int(state["head.0.weight"].shape[0]))
        model = _new(pcfg, int(arch.shape[1]) if arch is not None else 181,
                     int(conv1.shape[1]) if conv1 is not None else 256)
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, RuntimeError, AttributeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"predictor checkpoint {path} does not look like the authors' predictor ({msg})") \
            from None
    model.to(device).eval()
    vs = (ck.get("min_info") or {}).get("va_spearmanr")
    vs = None if vs is None or (isinstance(vs, float) and math.isnan(vs)) else float(vs)
    settings = {"adapt": True, "second_order": True, "inner_steps": 1, "inner_lr_init": 0.005,
                "episode": ck.get("epoch"), "valid_spearman": vs}
    return LoadedPredictor(model, init_inner_lrs(model, 0.005, learn=False), settings, None,
                           f"the authors' predictor checkpoint {path}")
