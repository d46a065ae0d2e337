"""The method registry: one entry per method, and every consumer (meta-test, search, help texts) takes all."""
import argparse
from pathlib import Path

import pytest
import torch

from dass.commands import meta_test as meta_test_cmd
from dass.commands import search as search_cmd
from dass.config import load_config
from dass.errors import ConfigError
from dass.evaluate import parse_methods
from dass.predictor import methods
from dass.testing import make_task

ROOT = Path(__file__).resolve().parent.parent
ALL = list(methods.REGISTRY)


def _parser(module):
    p = argparse.ArgumentParser()
    module.add_arguments(p)
    return p


def test_registry_lists_dass_its_ablations_and_every_baseline():
    assert ALL[0] == "dass"
    assert {"dass", "random", "macs", "params", "diswot", "metad2a", "dass-no-S", "dass-no-T", "dass-no-A", "dass-no-D",
            "dass-no-adapt", "dass-first-order"} == set(ALL)
    assert methods.PROXIES == ("random", "macs", "params", "diswot")
    assert all(methods.get(n).trained == (n not in methods.PROXIES) for n in ALL)


@pytest.mark.parametrize("name", ALL)
def test_every_method_is_accepted_by_meta_test_search_and_help(name):
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["predictor.inputs=[S,T,A,D]"])
    assert name in methods.available(cfg)
    assert parse_methods(name, cfg)[0][-1] == name
    assert _parser(search_cmd).parse_args(["--method", name]).method == name
    assert name in _parser(meta_test_cmd).format_help().replace("\n", " ").replace("  ", " ")
    assert name in _parser(search_cmd).format_help()


def test_applies_follows_the_config():
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["meta.second_order=false"])
    names = methods.available(cfg)
    assert "dass-no-D" not in names and "dass-first-order" not in names and "dass-no-adapt" in names
    with pytest.raises(ConfigError, match="unknown method 'flops'"):
        methods.get("flops")


def test_search_with_a_trained_baseline_needs_its_predictor(small_space, tmp_path):
    from dass.search import score_candidates

    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"meta.out={tmp_path}"])
    rec = make_task(small_space, "x", 0, n_students=6, seed=0)
    with pytest.raises(ConfigError, match="run main.py meta-test --baselines metad2a first"):
        score_candidates(cfg, rec, "metad2a")
    assert torch.equal(score_candidates(cfg, rec, "macs"), rec.macs.float())


def test_method_overrides_give_a_baseline_its_own_settings(tmp_path):
    from dass.config import load_config
    from dass.errors import ConfigError
    from dass.predictor.methods import variant_config

    cfg = load_config(None, [f"meta.out={tmp_path}", "predictor.target_norm=none",
                             "meta.method_overrides=[metad2a:predictor.target_norm=meta_train, metad2a:meta.n_query=7]"])
    m = variant_config(cfg, "metad2a")
    assert (m.predictor.target_norm, m.meta.n_query, m.predictor.inputs, m.meta.adapt) == ("meta_train", 7, ["D", "A"], False)
    assert cfg.predictor.target_norm == "none" and cfg.meta.n_query == 50          # DaSS's own config untouched
    assert variant_config(cfg, "dass-no-adapt").predictor.target_norm == "none"    # only the named method
    for bad, msg in [("metad2a", "must look like method:section.key=value"),
                     ("metad2a:predictor.nokey=1", "unknown config key 'predictor.nokey'"),
                     ("metad2a:predictor.target_norm=sometimes", "must be one of")]:
        with pytest.raises(ConfigError, match=msg):
            load_config(None, [f"meta.method_overrides=[{bad}]"])
    with pytest.raises(ConfigError, match="names 'foo', which is not a trained baseline"):
        variant_config(load_config(None, ["meta.method_overrides=[foo:meta.n_query=7]"]), "metad2a")
