"""One typed configuration for every subcommand.

A run's configuration is resolved in three layers: the dataclass defaults below (which are the
*paper's* settings, docs/method.md), then a YAML file (``configs/paper.yaml`` or
``configs/demo.yaml``), then ``key=value`` overrides from the command line (``kd.epochs=3``,
``space.stage_widths=[8,16,32,64]``). Every key and value is validated: an unknown key or a value of
the wrong type gives a one-line :class:`~dass.errors.ConfigError` naming the key.

Each subsystem owns one section (one dataclass). Add a field to a section to add an option; the
loader, the validator, ``main.py info`` and the saved ``config.yaml`` pick it up automatically.
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import typing
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

from .errors import ConfigError
from .io import atomic_write_text

PAPER_MULTIPLIERS = [0.5 + 0.0625 * i for i in range(9)]


def _choices(*values: str) -> dict:
    return {"choices": values}


@dataclass
class SpaceConfig:
    """The search space (docs/method.md#space). The paper's space is the default."""

    stage_widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    stage_strides: list[int] = field(default_factory=lambda: [1, 2, 2, 2])
    max_depth: int = 5
    min_depth: int = 1
    width_multipliers: list[float] = field(default_factory=lambda: list(PAPER_MULTIPLIERS))
    image_size: int = 64
    # Every student's last block at the teacher's last-stage width (the authors' students are; their KD and
    # predictor need it). The encoding keeps its length; only sampling and membership change.
    last_block_full_width: bool = True


@dataclass
class SourceConfig:
    """The class-subset tasks ``<source>-<k>`` of one real image source (dass.data.sources,
    docs/method.md#benchmark). Each task draws its classes and its training images per class from
    ``(seed, source, k)``; its test images are all images of groups (font families, icon themes,
    Fashion-MNIST's official test file) that no training image comes from."""

    root: str = ""                  # the source's raw files; "" = its place under data.root (dass download --group ...)
    num_classes: list[int] = field(default_factory=lambda: [5, 10])        # classes per task, inclusive range
    train_per_class: list[int] = field(default_factory=lambda: [10, 50])   # training images per class, drawn per task
    test_per_class: int = 0         # at most this many test images per class; 0 = every one
    test_fraction: float = 0.3      # the share of groups held out for test (Fashion-MNIST: its official split)
    seed: int = 0
    # a task is redrawn until its teacher reaches this many times chance (the probe of make-tasks); 0 = no probe
    min_x_chance: float = 0.0
    max_per_group: int = 4          # fonts: at most this many fonts of one family
    min_groups: int = 12            # icons: an icon name is a class when at least this many themes draw it


def _fonts() -> SourceConfig:
    return SourceConfig(num_classes=[10, 30], train_per_class=[15, 60])


def _icons() -> SourceConfig:
    return SourceConfig(num_classes=[10, 30], train_per_class=[10, 30])


def _fashion() -> SourceConfig:
    return SourceConfig(num_classes=[4, 10], train_per_class=[20, 100], test_per_class=200)


@dataclass
class DataConfig:
    """Where datasets live and how images are fed (docs/method.md#benchmark)."""

    root: str = "data"
    crop_padding: int = 8           # random-crop padding (8 at 64 px, docs/method.md#benchmark); used as given at any size
    # evaluation loaders drop the last partial batch, as the authors' do (their test accuracy leaves up to
    # batch_size - 1 images out); false evaluates every test image
    test_drop_last: bool = True
    mean: float = 0.5
    std: float = 0.5
    # QuickDraw's train split is cut to this many images per class (docs/method.md#benchmark).
    quickdraw_train_per_class: int = 20
    # Embedded default: the generated task family (dass.data.synthetic)
    synthetic_seed: int = 0
    synthetic_num_tasks: int = 12
    synthetic_train_per_class: int = 100
    synthetic_test_per_class: int = 40
    synthetic_family: str = field(default="v1", metadata=_choices("v1", "v3"))  # v3: the benchmark family
    synthetic_min_test_images: int = 0  # raise test images per class to reach this many per task
    # v3 only: a recipe is kept when its teacher (trained as configured, on CPU) reaches this many times
    # chance; otherwise the task is redrawn (docs/method.md#benchmark)
    synthetic_min_x_chance: float = 2.2
    # scikit-learn's bundled digits (the real unseen task): stratified test share, split seeded by synthetic_seed
    digits_test_fraction: float = 0.3
    # the real image sources' class-subset tasks fonts-<k>, icons-<k>, fashion_mnist-<k> (dass.data.sources)
    fonts: SourceConfig = field(default_factory=_fonts)
    icons: SourceConfig = field(default_factory=_icons)
    fashion_mnist: SourceConfig = field(default_factory=_fashion)


@dataclass
class TaskConfig:
    """Which tasks form meta-train / meta-valid / meta-test (docs/method.md#benchmark)."""

    meta_train: list[str] = field(default_factory=lambda: [f"tiny_imagenet-{k}" for k in range(8)])
    meta_valid: list[str] = field(default_factory=lambda: ["tiny_imagenet-8", "tiny_imagenet-9"])
    meta_test: list[str] = field(default_factory=lambda: ["cub", "dtd", "quickdraw", "stanford_cars"])


@dataclass
class SGDConfig:
    """The optimiser fields teachers and KD share: SGD (Nesterov, momentum, weight decay) with a cosine decay
    stepped every iteration, evaluated every ``eval_every`` epochs (docs/method.md#teachers, #kd). The
    defaults are the paper's KD recipe."""

    epochs: int = 50
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-5
    nesterov: bool = True
    eval_every: int = 5


@dataclass
class TeacherConfig(SGDConfig):
    """Teacher training recipe (docs/method.md#teachers)."""

    epochs: int = 180
    lr_meta_test: float = 0.01     # the meta-test teachers use a lower learning rate
    label_smoothing: float = 0.1
    seed: int = 0
    # the authors' optional heavy augmentation (their --aug, off in their scripts): a second horizontal
    # flip, Gaussian blur and a 30-70 degree rotation after crop + flip (dass.data.loader.heavy_augment)
    heavy_aug: bool = False


@dataclass
class KDConfig(SGDConfig):
    """Knowledge-distillation recipe (docs/method.md#kd)."""

    temperature: float = 6.0
    alpha: float = 0.5
    remap: str = field(default="copy_paste_first", metadata=_choices(
        "copy_paste_first", "copy_paste_last", "uniform", "copy_paste_uniform", "copy_paste_uniform_last", "random"))
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])   # the searched student's seeds
    # Memory for teacher logits shared by the students of a task (dass.train.logit_cache; build-db, demo):
    # paper scale needs 144 MB per Tiny ImageNet split (18,000 images x 40 classes x 50 epochs).
    # 0 = run the teacher on every batch.
    logit_cache_mb: int = 2048


@dataclass
class TrainConfig:
    """Engine switches shared by teacher training and KD."""

    # The defaults reproduce the authors' ground truth: fp32, contiguous tensors, deterministic cuDNN.
    # The three speed switches below change the numbers a KD run records (README, decisions table).
    # auto = bf16 autocast on CUDA (fp16 + GradScaler on GPUs without bf16), full precision on CPU
    amp: str = field(default="off", metadata=_choices("auto", "bf16", "fp16", "off"))
    channels_last: bool = False     # NHWC tensors (bench/RESULTS.md: 14-19% per KD step at 64 px on CPU)
    cudnn_benchmark: bool = False   # cuDNN autotuning (non-deterministic kernels) instead of deterministic ones
    compile: bool = False           # torch.compile the trained network
    num_threads: int = 0            # torch CPU threads; 0 = torch's default
    checkpoint_every: int = 1       # epochs between resumable checkpoints (evaluation epochs always write one)


@dataclass
class EmbedConfig:
    """Functional embeddings on a fixed noise input (docs/method.md#embedding)."""

    noise_seed: int = 0
    num_noise: int = 1              # number of noise images; maps are averaged over them
    stage: int = 4
    # processes embedding a search pool on CPU (dass.fastembed.remapped_maps_parallel); 0 = auto: one per
    # core (at most 8) with 4+ cores and 512+ candidates, else in this process (see auto_workers)
    workers: int = 0


@dataclass
class DatabaseConfig:
    """Meta-training database builder (docs/method.md#database, #file-formats)."""

    out: str = "preprocessed/ours"
    # students sampled per meta-train/valid task: at least meta.n_query + 1, since the authors' sampler
    # draws n_support + n_query students from a task
    num_students: int = 51
    num_students_meta_test: int = 50    # ground truth per unseen dataset (the paper's 50); 0 = db.num_students
    sample_seed: int = 0
    kd_seed: int = 0                # ground truth = one KD run per student (docs/method.md#kd)
    # The benchmark's labels: the mean over these KD seeds, each seed's accuracy kept as well
    # (docs/method.md#benchmark). Empty = [kd_seed].
    kd_seeds: list[int] = field(default_factory=list)
    # The first this-many students of every task are the same architectures (drawn once for all tasks):
    # how differently tasks rank them measures whether the best student depends on the task.
    shared_students: int = 0
    num_candidates: int = 1000      # search-candidate pool per meta-test dataset
    candidate_seed: int = 1


@dataclass
class PredictorConfig:
    """The meta-predictor (docs/method.md#predictor)."""

    inputs: list[str] = field(default_factory=lambda: ["S", "T", "A"])
    func_channels: int = 0          # 0 = last stage width of the space
    func_hidden: int = 128
    func_dim: int = 256
    arch_dim: int = 64
    head_hidden: int = 64
    dataset_dim: int = 56
    dataset_feature_dim: int = 512
    dataset_num_inducing: int = 32
    dataset_heads: int = 4
    dataset_samples_per_class: int = 20
    # Set Transformer attention scaling: "reference" divides by sqrt(model width) as the reference code
    # (MetaD2A/DaSS) does; "textbook" by sqrt(width / heads). See dass/predictor/set_encoder.py.
    attention_scale: str = field(default="reference", metadata=_choices("reference", "textbook"))
    dataset_block: str = field(default="sab", metadata=_choices("sab", "isab"))  # MetaD2A uses SAB
    # "none": the head regresses accuracy in percent, as the authors' release does. "meta_train": it
    # regresses (acc - mean) / std of the meta-train accuracies and the losses are measured in those
    # units (keeps the tanh head out of saturation on short runs; see dass/predictor/model.py).
    target_norm: str = field(default="none", metadata=_choices("none", "meta_train"))


@dataclass
class MetaConfig:
    """Meta-learning with teacher-guided adaptation (docs/method.md#meta-learning)."""

    episodes: int = 1000
    outer_lr: float = 5e-4
    inner_lr_init: float = 0.005
    learn_inner_lr: bool = True     # Meta-SGD (paper); false = one fixed scalar inner rate, inner_lr_init
    # which accuracy of a student's KD run is its label (the authors' --acc_type; paper: best)
    acc_type: str = field(default="best", metadata=_choices("best", "final"))
    inner_steps: int = 1
    second_order: bool = True
    adapt: bool = True
    n_query: int = 50
    eval_every: int = 20
    seed: int = 2                   # the authors' meta-training script's seed
    out: str = "exp/meta_train"
    # Evaluate the meta-batch's tasks in one torch.func.vmap call when their shapes agree (same maths
    # as the per-task loop, ~1.6x faster on small predictors); false = the plain loop.
    vmap_tasks: bool = True
    # A trained baseline's or ablation's own settings where they differ from DaSS's, as
    # "method:section.key=value" (e.g. "metad2a:predictor.target_norm=meta_train"): each method is
    # compared at the settings chosen for it on meta-valid, as DaSS is (docs/method.md#evaluation).
    method_overrides: list[str] = field(default_factory=list)
    # A folder of committed predictors, <folder>/<method>/seed<k>.pt (bench/db/predictors): meta-test and search
    # score with them instead of meta-training, each checked against this database and these settings
    predictors: str = ""


@dataclass
class SearchConfig:
    """Rapid search on an unseen task (docs/method.md#search)."""

    top_k: int = 5
    max_macs: float = 0.0           # 0 = no budget
    max_params: float = 0.0
    out: str = "exp/search"
    method: str = "dass"
    # Meta-SGD inner rates of the adaptation at search time: "learned" (those meta-training learned, as
    # meta-test uses them) or "initial" (every rate at meta.inner_lr_init, as the authors' search script
    # rebuilds them and loads only the weights)
    inner_lr: str = field(default="initial", metadata=_choices("learned", "initial"))


@dataclass
class RunConfig:
    """Where and on what a command runs."""

    device: str = "auto"            # auto = cuda when present, else cpu
    seed: int = 0
    out_dir: str = "runs"
    checkpoint_dir: str = "checkpoint"
    allow_legacy_pickle: bool = False   # opt-in for the authors' pickled files (torch.load weights_only=False)


@dataclass
class DemoConfig:
    """The embedded default end to end (docs/method.md#benchmark)."""

    out: str = "exp/demo"
    budget_frac: float = 0.5        # search budget: MACs <= this fraction of the teacher's
    workers: int = 0                # local build-db processes; 0 = min(2, CPU count)
    # The headline comparison runs on the committed benchmark database (docs/method.md#benchmark): its config
    # ("" = skip), the committed predictors' seeds it scores (empty = all of them; without committed predictors
    # these seeds are meta-trained), the seeds also meta-trained here as a live check and the trained methods
    # that check meta-trains (--baselines syntax; DaSS always: "metad2a" adds the MetaD2A-style predictor, whose
    # 1000 episodes cost about 3 more minutes on 2 cores), and the methods of the headline.
    benchmark: str = "configs/bench.yaml"
    benchmark_seeds: list[int] = field(default_factory=list)
    benchmark_live_seeds: list[int] = field(default_factory=lambda: [0])
    benchmark_live_methods: str = "dass"
    benchmark_methods: str = "random,macs,params,diswot,metad2a"


@dataclass
class Config:
    space: SpaceConfig = field(default_factory=SpaceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tasks: TaskConfig = field(default_factory=TaskConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    db: DatabaseConfig = field(default_factory=DatabaseConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    run: RunConfig = field(default_factory=RunConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)


# --------------------------------------------------------------------------------------------- #
# validation
# --------------------------------------------------------------------------------------------- #

def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotated type ``tp``; return the (lightly coerced) value."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list of {_type_name(item_tp)}, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            # YAML turns `name=0` into an int; a str field accepts scalars as their text.
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return value
    raise ConfigError(f"config key '{key}' has an unsupported type {tp!r}")  # pragma: no cover


def _section_types(section_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(section_cls)


def _apply(obj: Any, mapping: dict, prefix: str, source: str) -> None:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: '{prefix or 'top level'}' must be a mapping of keys, got {mapping!r}")
    hints = _section_types(type(obj))
    names = {f.name: f for f in dataclasses.fields(obj)}
    for k, v in mapping.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"{source}: unknown config key '{key}' (known keys here: {known})")
        cur = getattr(obj, k)
        if dataclasses.is_dataclass(cur):
            _apply(cur, v if v is not None else {}, key, source)
            continue
        value = _coerce(v, hints[k], key)
        choices = names[k].metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{source}: config key '{key}' must be one of {list(choices)}, got {value!r}")
        setattr(obj, k, value)


def _check_ranges(cfg: Config) -> None:
    """Value checks that types alone cannot express; one line each, naming the key."""
    s = cfg.space
    n = len(s.stage_widths)
    if n == 0 or any(w <= 0 for w in s.stage_widths):
        raise ConfigError("config key 'space.stage_widths' must be a non-empty list of positive ints")
    if len(s.stage_strides) != n or any(x not in (1, 2) for x in s.stage_strides):
        raise ConfigError(f"config key 'space.stage_strides' must hold {n} values, each 1 or 2")
    if not 1 <= s.min_depth <= s.max_depth:
        raise ConfigError("config keys 'space.min_depth'/'space.max_depth' need 1 <= min_depth <= max_depth")
    m = s.width_multipliers
    if not m or any(not 0 < x <= 1 for x in m) or sorted(m) != m or len(set(m)) != len(m):
        raise ConfigError("config key 'space.width_multipliers' must be strictly increasing values in (0, 1]")
    if m[-1] != 1.0:
        raise ConfigError("config key 'space.width_multipliers' must end with 1.0 (the teacher is in the space)")
    for i, w in enumerate(s.stage_widths):
        widths = [round(x * w) for x in m]
        if len(set(widths)) != len(widths) or min(widths) < 1:
            raise ConfigError(f"config key 'space.width_multipliers' gives repeated or zero widths for "
                              f"stage {i + 1} (width {w}); use fewer multipliers or wider stages")
    down = 2 ** sum(x == 2 for x in s.stage_strides)
    if s.image_size < down or s.image_size % down:
        raise ConfigError(f"config key 'space.image_size' must be a positive multiple of {down} "
                          f"(the space's total stride)")
    if not 0.0 <= cfg.kd.alpha <= 1.0:
        raise ConfigError("config key 'kd.alpha' must lie in [0, 1]")
    if cfg.kd.temperature <= 0:
        raise ConfigError("config key 'kd.temperature' must be positive")
    for sec in ("teacher", "kd"):
        r = getattr(cfg, sec)
        if r.epochs < 1 or r.batch_size < 1 or r.eval_every < 1 or r.lr <= 0:
            raise ConfigError(f"config keys '{sec}.epochs/batch_size/eval_every/lr' must be positive")
    bad = [x for x in cfg.predictor.inputs if x not in ("S", "T", "A", "D")]
    if bad or not cfg.predictor.inputs or len(set(cfg.predictor.inputs)) != len(cfg.predictor.inputs):
        raise ConfigError("config key 'predictor.inputs' must be a non-empty subset of [S, T, A, D]")
    if cfg.meta.n_query < 1 or cfg.meta.episodes < 1 or cfg.meta.eval_every < 1:
        raise ConfigError("config keys 'meta.n_query/episodes/eval_every' must be positive")
    if cfg.meta.inner_steps < 1:
        raise ConfigError("config key 'meta.inner_steps' must be >= 1; for no adaptation set meta.adapt=false")
    if cfg.db.num_students < 1 or cfg.db.num_students_meta_test < 0 or cfg.db.shared_students < 0:
        raise ConfigError("config key 'db.num_students' must be positive (db.num_students_meta_test and "
                          "db.shared_students >= 0)")
    if cfg.tasks.meta_train and cfg.db.num_students < cfg.meta.n_query + 1:
        raise ConfigError(f"config key 'db.num_students' = {cfg.db.num_students} must be at least meta.n_query + 1 = "
                          f"{cfg.meta.n_query + 1} (a support and a full query set per task); raise it or lower "
                          f"meta.n_query")
    if cfg.kd.logit_cache_mb < 0:
        raise ConfigError("config key 'kd.logit_cache_mb' must be >= 0 (0 switches the teacher-logit cache off)")
    if cfg.embed.workers < 0:
        raise ConfigError("config key 'embed.workers' must be >= 0 (0 = automatic, 1 = in this process)")
    check_device_name(cfg.run.device)
    for name in ("fonts", "icons", "fashion_mnist"):
        _check_source(getattr(cfg.data, name), f"data.{name}")


def _check_source(sc: "SourceConfig", key: str) -> None:
    for field_name, low in (("num_classes", 2), ("train_per_class", 1)):
        v = getattr(sc, field_name)
        if len(v) != 2 or not low <= v[0] <= v[1]:
            raise ConfigError(f"config key '{key}.{field_name}' must be [lo, hi] with {low} <= lo <= hi, got {v}")
    if not 0.0 < sc.test_fraction < 1.0:
        raise ConfigError(f"config key '{key}.test_fraction' must lie strictly between 0 and 1")
    if sc.test_per_class < 0 or sc.min_x_chance < 0 or sc.max_per_group < 0 or sc.min_groups < 1:
        raise ConfigError(f"config keys '{key}.test_per_class/min_x_chance/max_per_group' must be >= 0 and "
                          f"'{key}.min_groups' >= 1")


# --------------------------------------------------------------------------------------------- #
# loading
# --------------------------------------------------------------------------------------------- #

def parse_override(text: str) -> tuple[list[str], Any]:
    """``'kd.epochs=3'`` -> (['kd', 'epochs'], 3). Values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value (e.g. kd.epochs=3)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key; use section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


# The configs shipped inside the package (dass/configs/*.yaml; a checkout links them as configs/).
BUILTIN = ("paper", "demo", "bench")


def builtin_config(name: str):
    """The packaged config ``name`` (``paper``, ``demo``, ``bench``) as an importlib.resources file."""
    return resources.files("dass").joinpath("configs", f"{name}.yaml")


def resolve_config(path: str | os.PathLike):
    """``--config`` -> the file to read: an existing path as given; else a built-in config named by its bare
    name (``paper``) or by its place in a checkout (``configs/paper.yaml``), so the README's commands work
    from any folder and from an installed package."""
    p = Path(path)
    if p.is_file():
        return p
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if stem in BUILTIN and (p.parent in (Path("."), Path("configs")) or p.parent.name == "configs"):
        return builtin_config(stem)
    raise ConfigError(f"config file {p} does not exist; pass an existing file to --config or a built-in config "
                      f"({', '.join(BUILTIN)})")


def read_yaml(path: str | os.PathLike) -> dict:
    p = resolve_config(path)
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {p} is not valid YAML{where}; fix its syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections (space:, kd:, ...)")
    return data


def apply_overrides(cfg: Config, overrides: list[str], source: str = "override") -> Config:
    """Apply ``key=value`` overrides to ``cfg`` in place and validate the result."""
    for text in overrides:
        keys, value = parse_override(text)
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        _apply(cfg, nested, "", f"{source} '{text}'")
    _check_ranges(cfg)
    return cfg


def split_method_override(text: str) -> tuple[str, str]:
    """``'metad2a:predictor.target_norm=meta_train'`` -> ('metad2a', 'predictor.target_norm=meta_train')."""
    name, sep, override = text.partition(":")
    if not sep or not name.strip() or "=" not in override:
        raise ConfigError(f"config key 'meta.method_overrides' item '{text}' must look like "
                          "method:section.key=value (e.g. metad2a:predictor.target_norm=meta_train)")
    return name.strip(), override.strip()


def load_config(path: Optional[str | os.PathLike] = None, overrides: Optional[list[str]] = None) -> Config:
    """Defaults <- YAML file <- ``key=value`` overrides, validated."""
    cfg = Config()
    if path is not None:
        _apply(cfg, read_yaml(path), "", str(path))
    apply_overrides(cfg, list(overrides or []))
    for text in cfg.meta.method_overrides:   # each names a real key with a valid value (checked on a scratch copy)
        apply_overrides(Config(), [split_method_override(text)[1]], "config key 'meta.method_overrides' item")
    return cfg


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(d: dict, source: str = "config") -> Config:
    cfg = Config()
    _apply(cfg, d, "", source)
    _check_ranges(cfg)
    return cfg


def git_revision(cwd: Optional[str | os.PathLike] = None) -> str:
    """The checkout's commit (with ``-dirty`` when it has uncommitted changes), or 'unknown'.

    Only a package imported from a checkout has one: an installed copy (site-packages, maybe inside some
    other repository) reports ``unknown (dass <version>, installed)``."""
    if cwd is None:
        cwd = Path(__file__).resolve().parent.parent
        if not (cwd / ".git").exists():
            from . import __version__
            return f"unknown (dass {__version__}, installed)"
    try:
        r = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=cwd, capture_output=True,
                           text=True, timeout=10)
        rev = r.stdout.strip()
        if r.returncode != 0 or not rev:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_config(cfg: Config, run_dir: str | os.PathLike, extra: Optional[dict] = None) -> Path:
    """Write ``config.yaml`` into a run directory, atomically: the resolved config that runs, the git
    revision and the command line that started the process."""
    doc = {"git_revision": git_revision(), "argv": list(sys.argv), **(extra or {}), "config": to_dict(cfg)}
    out = Path(run_dir) / "config.yaml"
    atomic_write_text(out, yaml.safe_dump(doc, sort_keys=False))
    return out


DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_name(name: str) -> None:
    """``run.device`` must read auto, cpu, cuda or cuda:N (checked when a config is loaded)."""
    if not isinstance(name, str) or not DEVICE_PATTERN.match(name):
        raise ConfigError(f"config key 'run.device' = {name!r} is not a device; use auto, cpu, cuda or cuda:N "
                          f"(--device takes the same)")


def resolve_device(name: str) -> "Any":
    """'auto' -> cuda when present, else cpu. Never assumes CUDA: asking for an absent one is an error."""
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"config key 'run.device' = {name!r} asks for CUDA but no CUDA device is present; use "
                          f"--device cpu (or run.device=cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"config key 'run.device' = {name!r}: this machine has {torch.cuda.device_count()} CUDA "
                          f"device(s), numbered from 0")
    return dev
