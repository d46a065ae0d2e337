"""The embedded default's task family: small image-classification tasks generated from a seed.

DaSS needs many *different* tasks (docs/method.md#benchmark): tasks whose teachers reach different accuracies and
on which students of different sizes rank differently. The paper gets them from Tiny ImageNet class
subsets; the embedded default makes them procedurally, with no download, so the whole pipeline runs
on a laptop. Task ``synth-k`` draws its own *recipe*; a recipe draws per-class *prototypes*; an
image is its class prototype plus per-image variation and nuisances:

- an image holds 1-3 *motifs* (the recipe's ``num_parts``): striped, elongated, coloured blobs over
  a background grating. A class fixes each motif's size, elongation, stripe orientation and
  frequency and colour, and the grating's orientation and frequency;
- *where* a motif sits is random (``spread``) and carries no class information, as in natural
  images; a network must recognise motifs, not memorise pixels (a ResNet with global pooling is
  built for that, a linear classifier on pixels is not);
- the recipe weights three kinds of class cue, drawn from a Dirichlet: *shape* (motif geometry and
  stripes), *colour* (motif colours) and *texture* (the background grating). Colour tasks are
  solved by small networks; texture and fine shape tasks reward capacity;
- ``separation`` scales how far class prototypes lie from a shared base (class similarity) and
  ``variability`` how far each image strays from its prototype: their ratio sets an intrinsic
  error, so teacher accuracy varies by task and is rarely 100%;
- nuisances with no class information: random stripe and grating phase, grey level, a per-image
  colour cast (``colour_cast``), low-frequency clutter (``clutter``) and pixel noise.

A recipe also draws the number of classes (4-10). Generation is vectorised numpy in float64 and
depends only on ``(data.synthetic_seed, k)`` and the sizes, so ``synth-3`` is the same whatever
``data.synthetic_num_tasks`` is. Besides the generated family, :func:`make_digits` provides
scikit-learn's bundled handwritten digits (real data nobody here made) as the task ``digits``.

The benchmark's family v3 (:func:`make_recipe_v3`) adds a fourth cue and sets each task's profile by
its index. This module only makes arrays; :mod:`dass.data.generate` writes them (``make-tasks``), and
:func:`dass.data.tasks.write_task` is the one writer of the numpy layout.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError

GENERATOR_VERSION = 1
CUES = ("shape", "colour", "texture")
# The benchmark family (v3) adds a fourth cue, a fine periodic micro-texture (docs/method.md#benchmark).
FOUR_CUES = CUES + ("micro",)
FAMILIES = ("v1", "v3")
# v3: each task draws a *profile* from its index, so the family holds as many few-class as many-class
# tasks and every cue dominates in a quarter of them (docs/method.md#benchmark)
V3_CLASS_RANGES = ((4, 6), (7, 12))          # index % 2: few classes, many classes (inclusive)
V3_DOMINANT_CONCENTRATION = 2.0              # Dirichlet concentration of the dominant cue (others 0.4)
V3_TRAIN_FRACTION = (0.35, 1.0)             # a task's share of data.synthetic_train_per_class


# --------------------------------------------------------------------------------------------- #
# small numpy helpers
# --------------------------------------------------------------------------------------------- #

def resize_bilinear(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of the last two axes to ``size x size`` (half-pixel centres, like
    ``F.interpolate(align_corners=False)``); pure numpy so the output is identical everywhere."""
    h, w = x.shape[-2:]

    def axis(n_in: int):
        pos = (np.arange(size, dtype=np.float64) + 0.5) * (n_in / size) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, pos - i0

    r0, r1, fr = axis(h)
    c0, c1, fc = axis(w)
    rows = x[..., r0, :] * (1 - fr)[:, None] + x[..., r1, :] * fr[:, None]
    return rows[..., c0] * (1 - fc) + rows[..., c1] * fc


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- #
# the recipe of one task
# --------------------------------------------------------------------------------------------- #

def task_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """Independent streams per (seed, task, purpose): recipe, prototypes, train images, test images."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), int(stream)]))


def make_recipe(seed: int, index: int) -> dict:
    """Draw the task-level knobs of ``synth-<index>`` (all plain floats/ints, stored in meta.json)."""
    r = task_rng(seed, index, 0)
    cue = r.dirichlet([0.6, 0.6, 0.6])
    return {
        "num_classes": int(r.integers(4, 11)),
        "num_parts": int(r.integers(1, 4)),
        "cue_weights": {c: float(w) for c, w in zip(CUES, cue)},
        "separation": float(r.uniform(0.5, 1.0)),
        "variability": float(r.uniform(0.1, 0.35)),
        "spread": float(r.uniform(0.1, 0.5)),
        "pixel_noise": float(r.uniform(0.01, 0.08)),
        "clutter": float(r.uniform(0.0, 0.3)),
        "colour_cast": float(r.uniform(0.0, 0.15)),
        "texture_frequency": float(r.uniform(1.0, 2.5)),
    }


def _four_cue_knobs(r: np.random.Generator, alpha, low: int, high: int) -> dict:
    """The knobs of a four-cue recipe (v3), drawn in a fixed order: the cue mix from Dirichlet(alpha),
    then ``low..high`` classes, then the rest.

    Why four cues: a task family in which one kind of capacity wins everywhere makes MACs an oracle. The
    cues ask for different capacity (docs/method.md#benchmark): a micro-texture of period 2-4 pixels is
    visible only at full resolution, so it rewards early, wide stages (the MACs-heavy part of a network);
    motif shape needs receptive field, i.e. depth in the later stages (the params-heavy part); colour is
    solved by any network; many classes reward a wide last stage."""
    cue = r.dirichlet(alpha)
    return {
        "num_classes": int(r.integers(low, high + 1)),
        "num_parts": int(r.integers(1, 4)),
        "cue_weights": {c: float(w) for c, w in zip(FOUR_CUES, cue)},
        "micro_period": int(r.integers(2, 5)),
        "separation": float(r.uniform(0.6, 1.0)),
        "variability": float(r.uniform(0.1, 0.3)),
        "spread": float(r.uniform(0.1, 0.5)),
        "pixel_noise": float(r.uniform(0.01, 0.06)),
        "clutter": float(r.uniform(0.0, 0.3)),
        "colour_cast": float(r.uniform(0.0, 0.15)),
        "texture_frequency": float(r.uniform(1.0, 2.5)),
    }


def make_recipe_v3(seed: int, index: int, stream: int) -> dict:
    """The v3 recipe: four cues, with the number of classes and the dominant cue set by the task's index.

    Why: left to chance (the family before it), both gave a family where most tasks reward the same
    capacity (docs/method.md#benchmark has the measured family check). v3 alternates few-class (4-6) and many-class
    (7-12) tasks, and lets each cue in turn dominate (its Dirichlet concentration 2.0, the others 0.4),
    so the profiles that rank students differently are present by construction, not by luck. It also
    draws the task's amount of training data (35-100% of ``data.synthetic_train_per_class``): with little
    data, depth and width stop paying, so a student's size no longer predicts its rank. The other knobs
    stay random. Whether the task is learnable is checked by :func:`make_learnable_task`.
    """
    r = task_rng(seed, index, stream)
    low, high = V3_CLASS_RANGES[index % 2]
    alpha = np.full(len(FOUR_CUES), 0.4)
    alpha[(index // 2) % len(FOUR_CUES)] = V3_DOMINANT_CONCENTRATION
    knobs = _four_cue_knobs(r, alpha, low, high)
    # how much of data.synthetic_train_per_class the task gets: small data favours small students
    knobs["train_fraction"] = float(r.uniform(*V3_TRAIN_FRACTION))
    return knobs


def _micro_tiles(recipe: dict, r: np.random.Generator) -> np.ndarray:
    """One zero-mean ``period x period`` tile per class, unit scale."""
    t = recipe["micro_period"]
    tiles = r.uniform(-1, 1, (recipe["num_classes"], t, t))
    return tiles - tiles.mean(axis=(1, 2), keepdims=True)


def render_micro(recipe: dict, tiles: np.ndarray, labels: np.ndarray, size: int,
                 r: np.random.Generator) -> np.ndarray:
    """The micro-texture layer (N x size x size): the class tile, perturbed per image by the recipe's
    variability and tiled from a random offset (its phase carries no class information)."""
    n, t = len(labels), recipe["micro_period"]
    own = tiles[labels] + 2.0 * recipe["variability"] * r.uniform(-1, 1, (n, t, t))
    big = np.tile(own, (1, size // t + 2, size // t + 2))
    oy, ox = r.integers(0, t, n), r.integers(0, t, n)
    rows = oy[:, None] + np.arange(size)[None]                                  # N x size
    cols = ox[:, None] + np.arange(size)[None]
    return big[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def _prototypes(recipe: dict, r: np.random.Generator) -> dict:
    """Per-class parameters: a shared base plus a class offset scaled by separation x cue weight.

    Parameters live in a normalised space (roughly unit scale); the renderer maps them to pixels.
    """
    k, p = recipe["num_classes"], recipe["num_parts"]
    w = recipe["cue_weights"]
    sep = recipe["separation"]
    geo, col, tex = sep * (0.3 + 2.2 * w["shape"]), sep * (0.2 + 2.5 * w["colour"]), sep * (0.3 + 2.2 * w["texture"])

    def offsets(shape, scale):
        return scale * r.standard_normal((k,) + shape)

    base = {
        "logsize": np.log(r.uniform(0.3, 0.5, (1, p))), "logaspect": r.uniform(-0.3, 0.3, (1, p)),
        "theta": r.uniform(0, np.pi, (1, p)), "logfreq": np.log(r.uniform(1.0, 2.5, (1, p))),
        "colour": r.uniform(0.25, 0.75, (1, p, 3)),
        "tex_theta": r.uniform(0, np.pi, (1,)), "tex_logfreq": np.log(np.full((1,), recipe["texture_frequency"])),
    }
    return {
        "logsize": base["logsize"] + offsets((p,), 0.25 * geo),
        "logaspect": base["logaspect"] + offsets((p,), 0.45 * geo),
        "theta": base["theta"] + offsets((p,), 0.6 * geo),
        "logfreq": base["logfreq"] + offsets((p,), 0.35 * geo),
        "colour": base["colour"] + offsets((p, 3), 0.22 * col),
        "tex_theta": base["tex_theta"] + offsets((), 0.6 * tex),
        "tex_logfreq": base["tex_logfreq"] + offsets((), 0.35 * tex),
    }


# Within-class spread of each parameter, per unit of the recipe's ``variability`` (same units as the
# class offsets in _prototypes, so variability / separation sets how much classes overlap).
_SPREAD = {"logsize": 0.25, "logaspect": 0.45, "theta": 0.6, "logfreq": 0.35,
           "colour": 0.22, "tex_theta": 0.6, "tex_logfreq": 0.35}


def render(recipe: dict, protos: dict, labels: np.ndarray, size: int, r: np.random.Generator) -> np.ndarray:
    """Images (uint8, N x size x size x 3) of the given labels, one vectorised pass."""
    n, p = len(labels), recipe["num_parts"]
    tau = recipe["variability"]
    par = {}
    for key, v in protos.items():
        if key == "micro":
            continue
        v = v[labels]
        par[key] = v + _SPREAD[key] * tau * r.standard_normal(v.shape)

    t = (np.arange(size, dtype=np.float64) + 0.5) / size * 2 - 1          # pixel centres in [-1, 1]
    yy, xx = np.meshgrid(t, t, indexing="ij")                              # size x size
    gx, gy = xx[None], yy[None]                                            # 1 x s x s

    # background: grey level + the texture cue (a grating) + low-frequency clutter
    grey = r.uniform(0.35, 0.65, (n, 1, 1, 1))
    th, fr = par["tex_theta"], np.exp(par["tex_logfreq"])
    phase = r.uniform(0, 2 * np.pi, n)
    grating = np.cos(np.pi * fr[:, None, None] * (gx * np.cos(th)[:, None, None] + gy * np.sin(th)[:, None, None])
                     + phase[:, None, None])
    contrast = 0.08 + 0.3 * recipe["cue_weights"]["texture"]
    img = grey + contrast * grating[..., None] * np.array([1.0, 0.9, 0.8])
    clutter = resize_bilinear(r.standard_normal((n, 3, 4, 4)), size).transpose(0, 2, 3, 1)
    img = img + recipe["clutter"] * 0.35 * clutter

    # the motifs, alpha-composited in order over the background
    part_phase = r.uniform(0, 2 * np.pi, (n, p))
    # where a motif sits carries no class information; how far it may wander is the recipe's spread
    pos = r.uniform(-1, 1, (n, p, 2)) * (0.15 + recipe["spread"])
    for j in range(p):
        dx = gx - pos[:, j, 0, None, None]
        dy = gy - pos[:, j, 1, None, None]
        th = par["theta"][:, j, None, None]
        u = dx * np.cos(th) + dy * np.sin(th)
        v = -dx * np.sin(th) + dy * np.cos(th)
        s = np.exp(par["logsize"][:, j, None, None])
        a = np.exp(par["logaspect"][:, j, None, None])
        alpha = np.exp(-0.5 * ((u / (s * a)) ** 2 + (v * a / s) ** 2))
        stripes = 0.7 + 0.3 * np.cos(0.5 * np.pi * np.exp(par["logfreq"][:, j, None, None]) * u / s
                                     + part_phase[:, j, None, None])
        colour = np.clip(par["colour"][:, j], 0, 1)[:, None, None, :]
        img = img * (1 - alpha[..., None]) + (colour * stripes[..., None]) * alpha[..., None]

    if "micro" in recipe["cue_weights"]:   # the benchmark family's fine texture, over everything
        micro = render_micro(recipe, protos["micro"], labels, size, r)
        img = img + (0.02 + 0.3 * recipe["cue_weights"]["micro"]) * micro[..., None]

    # nuisances: a per-image colour cast and pixel noise
    img = img + recipe["colour_cast"] * r.uniform(-1, 1, (n, 1, 1, 3))
    img = img + recipe["pixel_noise"] * r.standard_normal(img.shape)
    return _to_uint8(img)


def _balanced_labels(num_classes: int, per_class: int, r: np.random.Generator) -> np.ndarray:
    return r.permutation(np.repeat(np.arange(num_classes, dtype=np.int64), per_class))


def test_images_per_class(num_classes: int, per_class: int, min_images: int) -> int:
    """Test images per class: ``per_class``, raised so the test split holds at least ``min_images``
    (a student's accuracy is then measured to about a point: docs/method.md#benchmark)."""
    return max(int(per_class), -(-int(min_images) // int(num_classes)))


def _streams(family: str, attempt: int) -> dict:
    """RNG stream ids per purpose. v1 keeps its own (its tasks stay byte-identical); v3 gives every
    attempt of a task its own block of streams, so a redrawn task shares nothing with the rejected one."""
    if family == "v1":
        return {"protos": 1, "micro": 11, "train": 2, "test": 3}
    base = 20 + 10 * int(attempt)
    return {"recipe": base, "protos": base + 1, "micro": base + 2, "train": base + 3, "test": base + 4}


def make_task(seed: int, index: int, image_size: int, train_per_class: int, test_per_class: int,
              family: str = "v1", min_test_images: int = 0, attempt: int = 0) -> dict:
    """Arrays and metadata of ``synth-<index>`` (nothing written); ``attempt`` > 0 redraws a v3 task."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown task family '{family}' (config key 'data.synthetic_family'); use one of "
                          f"{', '.join(FAMILIES)}")
    streams = _streams(family, attempt)
    recipe = make_recipe_v3(seed, index, streams["recipe"]) if family == "v3" else make_recipe(seed, index)
    protos = _prototypes(recipe, task_rng(seed, index, streams["protos"]))
    if family != "v1":
        protos["micro"] = _micro_tiles(recipe, task_rng(seed, index, streams["micro"]))
    test_per_class = test_images_per_class(recipe["num_classes"], test_per_class, min_test_images)
    out = {"meta": {"name": f"synth-{index}", "num_classes": recipe["num_classes"], "recipe": recipe}}
    if family != "v1":
        out["meta"]["family"] = family
    if family == "v3":
        train_per_class = max(1, round(train_per_class * recipe["train_fraction"]))
        out["meta"].update(attempt=int(attempt), train_per_class=train_per_class)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        r = task_rng(seed, index, streams[split])
        y = _balanced_labels(recipe["num_classes"], per_class, r)
        out[f"{split}_images"] = render(recipe, protos, y, image_size, r)
        out[f"{split}_labels"] = y
    return out


# --------------------------------------------------------------------------------------------- #
# the real bundled task: scikit-learn's handwritten digits
# --------------------------------------------------------------------------------------------- #

def make_digits(image_size: int, seed: int, test_fraction: float = 0.3) -> dict:
    """UCI handwritten digits from the scikit-learn wheel (no download): 8x8 greyscale 0..16 ->
    uint8 -> bilinear upsampling to ``image_size`` -> RGB; a seeded stratified train/test split."""
    # imported on use: scikit-learn takes ~1 s to import and only the digits task needs it
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float64) / 16.0                                 # 1797 x 8 x 8 in [0, 1]
    y = d.target.astype(np.int64)
    x = resize_bilinear(x, image_size) if image_size != x.shape[-1] else x
    x = np.repeat(_to_uint8(x)[..., None], 3, axis=-1)
    r = np.random.default_rng(np.random.SeedSequence([int(seed), 1_000_000]))
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):                                                 # stratified: per class
        idx = np.flatnonzero(y == c)
        test[r.choice(idx, int(round(test_fraction * len(idx))), replace=False)] = True
    tr, te = r.permutation(np.flatnonzero(~test)), r.permutation(np.flatnonzero(test))
    meta = {"name": "digits", "num_classes": 10, "source": "sklearn.datasets.load_digits (UCI optdigits test set)",
            "test_fraction": test_fraction}
    return {"meta": meta, "train_images": x[tr], "train_labels": y[tr], "test_images": x[te], "test_labels": y[te]}


# --------------------------------------------------------------------------------------------- #
# configuration checks
# --------------------------------------------------------------------------------------------- #

def check_config(cfg) -> None:
    d = cfg.data
    if d.synthetic_num_tasks < 0:
        raise ConfigError("config key 'data.synthetic_num_tasks' must be >= 0")
    if d.synthetic_train_per_class < 1 or d.synthetic_test_per_class < 1:
        raise ConfigError("config keys 'data.synthetic_train_per_class/synthetic_test_per_class' must be positive")
    if d.synthetic_family not in FAMILIES:
        raise ConfigError(f"config key 'data.synthetic_family' is '{d.synthetic_family}'; use one of {', '.join(FAMILIES)}")
    if d.synthetic_min_test_images < 0:
        raise ConfigError("config key 'data.synthetic_min_test_images' must be >= 0")
    if not 0 <= d.synthetic_min_x_chance < 100:
        raise ConfigError("config key 'data.synthetic_min_x_chance' must be >= 0 (a multiple of chance accuracy; "
                          "0 accepts every task)")
    if not 0.0 < d.digits_test_fraction < 1.0:
        raise ConfigError("config key 'data.digits_test_fraction' must lie strictly between 0 and 1")
