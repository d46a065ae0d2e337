"""The layout of the predictor's inputs, stored in every file that holds them.

An architecture encoding is only meaningful with the space it was made in (which one-hot slot is which
width, what the extra entry holds), and a functional map only with the noise it was computed on (seed,
count, image size, stage). Two layouts can give vectors and maps of the same shapes -- 181 entries and
256 x 8 x 8 -- while meaning different things, so every database file, candidate pool and predictor
checkpoint we write carries its layout (key ``layout``), and files that disagree are refused instead of
mixed. Files without it (the authors') are taken to have the layout the configuration declares
(docs/method.md#authors-compat).
"""
from __future__ import annotations

import json
from typing import Optional

from .errors import DataError

KEY = "layout"
ONE_HOT_ORDER = "stage-major block slots, each a one-hot over the width multipliers, all-zero when absent"
EXTRA_ENTRY = "MACs relative to the teacher's"


def config_layout(cfg) -> dict:
    """The layout a configuration declares (what it writes, and what files without one are taken to have)."""
    from .space import SearchSpace

    space = SearchSpace.from_config(cfg)
    return {"encoding": {"stage_widths": list(space.stage_widths), "max_depth": space.max_depth,
                         "width_multipliers": list(space.width_multipliers), "one_hot": ONE_HOT_ORDER,
                         "extra": EXTRA_ENTRY, "dim": space.encoding_dim},
            "noise": {"seed": int(cfg.embed.noise_seed), "count": int(cfg.embed.num_noise),
                      "image_size": space.image_size, "stage": int(cfg.embed.stage)}}


def _flat(layout: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in layout.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def difference(a: Optional[dict], b: Optional[dict]) -> Optional[str]:
    """``"noise.seed 0 vs 1"`` for the first field where two layouts differ; None when they agree or one is
    unknown."""
    if not a or not b:
        return None
    fa, fb = _flat(a), _flat(b)
    for k in sorted(set(fa) | set(fb)):
        if json.dumps(fa.get(k)) != json.dumps(fb.get(k)):
            return f"{k} {json.dumps(fa.get(k))} vs {json.dumps(fb.get(k))}"
    return None


def require_same(a: Optional[dict], b: Optional[dict], what_a: str, what_b: str, fix: str,
                 error=DataError) -> None:
    """Refuse (one line) two inputs made with different layouts."""
    diff = difference(a, b)
    if diff is not None:
        raise error(f"{what_a} and {what_b} use different input layouts ({diff}); {fix}")
