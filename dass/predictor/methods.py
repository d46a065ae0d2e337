"""Every ranking method behind one interface: DaSS, its ablations and the baselines.

docs/method.md#evaluation. A method is one :class:`Method` entry in :data:`REGISTRY`; meta-test, search,
the demo and the CLI help texts all read the registry, so adding a baseline is adding one entry:

* a **proxy** scores students from their records alone (``score(records, seed) -> Tensor[N]``,
  higher = predicted more accurate): ``random``, ``macs``, ``params``, ``diswot``;
* a **trained** method is DaSS meta-trained under a changed config (``configure(cfg)`` edits a deep
  copy in place) and scored by its predictor (a :class:`~dass.predictor.checkpoint.LoadedPredictor`,
  through :func:`dass.predictor.inference.predict`, the same path in meta-test and in search): ``dass`` itself, ``metad2a`` (a MetaD2A/HELP-style
  predictor: dataset + architecture inputs, no teacher-guided adaptation, no functional embeddings) and
  the ablations ``dass-no-S/T/A/D`` (one input removed), ``dass-no-adapt``, ``dass-first-order``. Each
  trains into ``<meta.out>/baselines/<name>`` (:func:`run_config`; one folder per meta-training seed under
  ``<meta.out>/seeds/<name>/seed<k>``); ``applies(cfg)`` says whether it makes sense for a config.

Several runs of one trained method (meta-training seeds) are combined into its *seed ensemble*: the mean
of the runs' standardised scores (:func:`ensemble`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from ..config import apply_overrides, split_method_override
from ..db.records import TaskRecords
from ..errors import ConfigError, DataError
from ..stats import standardised
from .baselines import diswot_score
from .checkpoint import LoadedPredictor
from .inference import predict


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    score: Optional[Callable[[TaskRecords, int], torch.Tensor]] = None   # proxies
    configure: Optional[Callable[[object], None]] = None                   # trained variants
    applies: Callable[[object], bool] = lambda cfg: True

    @property
    def trained(self) -> bool:
        return self.score is None


def _random(rec: TaskRecords, seed: int) -> torch.Tensor:
    return torch.rand(len(rec), generator=torch.Generator().manual_seed(int(seed)))


def _diswot(rec: TaskRecords, seed: int) -> torch.Tensor:
    if rec.teacher is None:
        raise DataError(f"task {rec.task}: the diswot baseline needs the teacher's functional map (teacher record)")
    return diswot_score(rec.fmaps, rec.teacher.fmap)


def _drop_input(x: str) -> Method:
    def configure(c):
        c.predictor.inputs = [i for i in c.predictor.inputs if i != x]

    def applies(cfg):
        return x in cfg.predictor.inputs and len(cfg.predictor.inputs) > 1

    return Method(f"dass-no-{x}", f"DaSS without its {x} input", configure=configure, applies=applies)


def _metad2a(c) -> None:
    c.predictor.inputs = ["D", "A"]
    c.meta.adapt = False


def _no_adapt(c) -> None:
    c.meta.adapt = False


def _first_order(c) -> None:
    c.meta.second_order = False


_ENTRIES = [
    Method("dass", "DaSS: meta-trained, adapted on the task's teacher", configure=lambda c: None),
    Method("random", "a seeded uniform draw (chance level)", score=_random),
    Method("macs", "bigger is better: multiply-accumulates", score=lambda r, s: r.macs.double().clone()),
    Method("params", "bigger is better: parameter count", score=lambda r, s: r.params.double().clone()),
    Method("diswot", "DisWOT-style teacher-student map similarity, training-free", score=_diswot),
    Method("metad2a", "MetaD2A/HELP-style predictor: dataset + architecture, no teacher adaptation",
           configure=_metad2a),
    *[_drop_input(x) for x in ("S", "T", "A", "D")],
    Method("dass-no-adapt", "DaSS without teacher-guided adaptation", configure=_no_adapt,
           applies=lambda cfg: bool(cfg.meta.adapt)),
    Method("dass-first-order", "DaSS with first-order meta-gradients", configure=_first_order,
           applies=lambda cfg: bool(cfg.meta.adapt and cfg.meta.second_order)),
]
REGISTRY: dict[str, Method] = {m.name: m for m in _ENTRIES}
PROXIES = tuple(n for n, m in REGISTRY.items() if not m.trained)


def get(name: str) -> Method:
    if name not in REGISTRY:
        raise ConfigError(f"unknown method '{name}'; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def available(cfg) -> list[str]:
    """The methods that make sense for ``cfg``, ``dass`` first, in report order."""
    return [n for n, m in REGISTRY.items() if m.applies(cfg)]


def trained_variants(cfg) -> list[str]:
    """The trained baselines/ablations for ``cfg`` (every trained method but DaSS itself)."""
    return [n for n in available(cfg) if n != "dass" and REGISTRY[n].trained]


def help_text() -> str:
    return "; ".join(f"{n}: {m.summary}" for n, m in REGISTRY.items())


def variant_config(cfg, name: str):
    """A deep copy of ``cfg`` changed into trained baseline/ablation ``name`` (own ``meta.out``)."""
    if name not in trained_variants(cfg):
        raise ConfigError(f"unknown trained baseline '{name}'; known for this config: {', '.join(trained_variants(cfg))}")
    own = []
    for text in cfg.meta.method_overrides:
        method, override = split_method_override(text)
        if method not in trained_variants(cfg):
            raise ConfigError(f"config key 'meta.method_overrides' names '{method}', which is not a trained baseline "
                              f"of this config; use one of {', '.join(trained_variants(cfg))}")
        if method == name:
            own.append(override)
    c = copy.deepcopy(cfg)
    REGISTRY[name].configure(c)
    apply_overrides(c, own, f"config key 'meta.method_overrides' for {name}:")
    c.meta.out = str(Path(cfg.meta.out) / "baselines" / name)
    return c


def run_config(cfg, name: str, seed: Optional[int] = None):
    """The config trained method ``name`` meta-trains with: DaSS's own (a copy) or its variant's, and with
    ``seed`` that meta-training seed in its own folder ``<meta.out>/seeds/<name>/seed<k>``."""
    c = copy.deepcopy(cfg) if name == "dass" else variant_config(cfg, name)
    if seed is not None:
        c.meta.seed = int(seed)
        c.meta.out = str(Path(cfg.meta.out) / "seeds" / name / f"seed{seed}")
    return c


def committed_runs(cfg, name: str, seeds=None) -> list[Path]:
    """The committed predictors of ``name`` (``meta.predictors/<name>/seed<k>.pt``), by seed; only ``seeds``
    when given."""
    folder = Path(cfg.meta.predictors) / name
    found = sorted(folder.glob("seed*.pt"), key=lambda p: int(p.stem[4:]) if p.stem[4:].isdigit() else -1)
    return [p for p in found if seeds is None or (p.stem[4:].isdigit() and int(p.stem[4:]) in seeds)]


def method_runs(cfg, name: str) -> list[Path]:
    """Every predictor of trained method ``name`` there is, best first to use: the committed ones, else its
    meta-training seeds (``<meta.out>/seeds/<name>/seed<k>/best.pt``), else its one run (``best.pt``)."""
    if cfg.meta.predictors:
        return committed_runs(cfg, name)
    seeds = sorted(Path(cfg.meta.out, "seeds", name).glob("seed*/best.pt"))
    if seeds:
        return seeds
    one = Path(run_config(cfg, name).meta.out) / "best.pt"
    return [one] if one.is_file() else []


def needs_dataset_features(cfg, name: str) -> bool:
    return "D" in run_config(cfg, name).predictor.inputs


def score(method: str, records: TaskRecords, predictor: Optional[LoadedPredictor] = None,
          seed: int = 0) -> torch.Tensor:
    """Scores of every student of ``records`` under ``method`` (higher = predicted more accurate): a proxy
    from the records and ``seed``, a trained method from its loaded ``predictor``."""
    m = get(method)
    if not m.trained:
        return m.score(records, int(seed)).double()
    if predictor is None:
        raise ConfigError(f"method '{method}' is a trained predictor: pass its LoadedPredictor "
                          f"(dass.predictor.checkpoint.load_predictor)")
    return predict(predictor, records).double()


def ensemble(runs: torch.Tensor) -> torch.Tensor:
    """The seed ensemble of ``runs x N`` scores (:func:`dass.stats.standardised` runs, averaged): standardising
    first keeps a run whose scores spread more from outweighing the others."""
    r = torch.as_tensor(runs, dtype=torch.float64).detach().cpu().numpy()
    return torch.from_numpy(standardised(r).mean(axis=0))
