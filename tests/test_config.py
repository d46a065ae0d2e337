"""The typed config: one meaning for the paper's settings, built-in configs by name, and one table of the
errors a bad value gives (a one-line ConfigError naming the key)."""
from __future__ import annotations

import dataclasses

import pytest

from dass.config import BUILTIN, Config, builtin_config, load_config, read_yaml, resolve_config, to_dict
from dass.errors import ConfigError


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_the_built_in_defaults_are_the_paper_config_key_by_key():
    defaults, paper = _flat(to_dict(Config())), _flat(to_dict(load_config("configs/paper.yaml")))
    assert defaults.keys() == paper.keys()
    differ = {k: (defaults[k], paper[k]) for k in defaults if defaults[k] != paper[k]}
    assert not differ, f"built-in default vs configs/paper.yaml: {differ}"
    # and the file spells out the keys that used to differ (the authors' choices)
    written = _flat(read_yaml(builtin_config("paper")))
    for key in ("space.last_block_full_width", "search.inner_lr", "meta.seed", "db.num_students_meta_test",
                "data.test_drop_last"):
        assert key in written and written[key] == defaults[key], key


def test_the_checker_above_can_fail():
    """A defaults table that differs from paper.yaml in one key is reported (the test above is not vacuous)."""
    other = dataclasses.replace(Config(), meta=dataclasses.replace(Config().meta, seed=0))
    flat = _flat(to_dict(other))
    assert flat["meta.seed"] != _flat(to_dict(load_config("configs/paper.yaml")))["meta.seed"]


@pytest.mark.parametrize("name", BUILTIN)
def test_built_in_configs_resolve_by_name_and_by_checkout_path_from_any_folder(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                              # no configs/ folder here
    by_name, by_path = resolve_config(name), resolve_config(f"configs/{name}.yaml")
    assert by_name.read_text() == by_path.read_text() == builtin_config(name).read_text()
    assert to_dict(load_config(name)) == to_dict(load_config(f"configs/{name}.yaml"))
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config("elsewhere/paper.yaml")           # only a bare name or configs/<name>.yaml is built in


@pytest.mark.parametrize("override, needle", [
    ("kd.epochs=0", "'kd.epochs/batch_size/eval_every/lr' must be positive"),
    ("teacher.lr=-1", "'teacher.epochs/batch_size/eval_every/lr' must be positive"),
    ("kd.epochs=three", "'kd.epochs' must be an integer"),
    ("kd.nesterov=maybe", "'kd.nesterov' must be true or false"),
    ("kd.alpha=2", "'kd.alpha' must lie in [0, 1]"),
    ("kd.temperature=0", "'kd.temperature' must be positive"),
    ("kd.remap=sideways", "'kd.remap' must be one of"),
    ("kd.logit_cache_mb=-1", "'kd.logit_cache_mb' must be >= 0"),
    ("space.stage_widths=[]", "'space.stage_widths' must be a non-empty list"),
    ("space.stage_strides=[1,3,2,2]", "'space.stage_strides' must hold 4 values, each 1 or 2"),
    ("space.min_depth=6", "need 1 <= min_depth <= max_depth"),
    ("space.width_multipliers=[0.5,0.75]", "must end with 1.0"),
    ("space.width_multipliers=[0.75,0.5,1.0]", "strictly increasing"),
    ("space.image_size=60", "'space.image_size' must be a positive multiple of 8"),
    ("space.stage_widths=bad", "must be a list of int"),
    ("predictor.inputs=[S,X]", "'predictor.inputs' must be a non-empty subset"),
    ("predictor.attention_scale=loud", "'predictor.attention_scale' must be one of"),
    ("meta.n_query=0", "'meta.n_query/episodes/eval_every' must be positive"),
    ("meta.inner_steps=0", "'meta.inner_steps' must be >= 1"),
    ("meta.acc_type=last", "'meta.acc_type' must be one of"),
    ("db.num_students=10", "must be at least meta.n_query + 1 = 51"),
    ("db.num_students_meta_test=-1", "'db.num_students' must be positive"),
    ("embed.workers=-1", "'embed.workers' must be >= 0"),
    ("search.inner_lr=sometimes", "'search.inner_lr' must be one of"),
    ("data.synthetic_family=v2", "'data.synthetic_family' must be one of"),
    ("run.device=gpu", "'run.device' = 'gpu' is not a device"),
    ("run.device=cuda:x", "is not a device"),
    ("run.device=3", "is not a device"),
    ("kd.epochz=3", "unknown config key 'kd.epochz'"),
    ("nonsense.key=1", "unknown config key 'nonsense'"),
    ("kd=3", "'kd' must be a mapping of keys"),
    ("noequals", "must look like section.key=value"),
    ("=3", "has an empty key"),
])
def test_every_bad_value_is_a_one_line_error_naming_the_key(override, needle):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_bad_method_override_names_the_item():
    with pytest.raises(ConfigError, match="item 'metad2a' must look like method:section.key=value"):
        load_config(None, ["meta.method_overrides=[metad2a]"])
    with pytest.raises(ConfigError, match="unknown config key 'predictor.widht'"):
        load_config(None, ["meta.method_overrides=[metad2a:predictor.widht=3]"])
