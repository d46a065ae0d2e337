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
from dass.testing import make_fixture_task

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
    rec = make_fixture_task(small_space, "x", 0, n_students=6, seed=0)
    with pytest.raises(ConfigError, match="run main.py meta-test --baselines metad2a first"):
        score_candidates(cfg, rec, "metad2a")
    assert torch.equal(score_candidates(cfg, rec, "macs"), rec.macs.double())


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


# --------------------------------------------------------------------------------------------- #
# one scoring path: every method on a tiny task, and search == meta-test for one checkpoint
# --------------------------------------------------------------------------------------------- #

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every trained method of the registry meta-trained for a few episodes on a fixture database."""
    from dass.db.records import load_split_records
    from dass.evaluate import trained_predictors
    from dass.testing import fixture_db_for_config

    tmp = tmp_path_factory.mktemp("registry")
    cfg = load_config(ROOT / "configs" / "demo.yaml", [
        f"db.out={tmp / 'db'}", f"meta.out={tmp / 'meta'}", "tasks.meta_train=[t0,t1]", "tasks.meta_valid=[v0]",
        "tasks.meta_test=[x0]", "predictor.inputs=[S,T,A,D]", "predictor.func_hidden=8", "predictor.func_dim=8",
        "predictor.arch_dim=8", "predictor.head_hidden=8", "predictor.dataset_feature_dim=16",
        "predictor.dataset_dim=8", "predictor.dataset_heads=2", "meta.episodes=2", "meta.eval_every=2",
        "meta.n_query=8", "db.num_students=12", "run.device=cpu"])
    fixture_db_for_config(cfg)
    tests = load_split_records(cfg, "meta_test")
    names = [n for n in methods.available(cfg) if methods.get(n).trained]
    preds = trained_predictors(cfg, names, tests, None, [0], True, "cpu", progress=False)
    return cfg, tests[0], preds


@pytest.mark.parametrize("name", ALL)
def test_every_registered_method_scores_a_tiny_task(trained, name):
    cfg, rec, preds = trained
    if methods.get(name).trained:
        assert len(preds[name]) == 1
        s = methods.score(name, rec, predictor=preds[name][0])
    else:
        s = methods.score(name, rec, seed=0)
    assert s.shape == (len(rec),) and s.dtype == torch.float64 and torch.isfinite(s).all()
    assert float(s.std()) > 0                          # a real ranking, not a constant
    if methods.get(name).trained:
        with pytest.raises(ConfigError, match="pass its LoadedPredictor"):
            methods.score(name, rec)                    # a trained method without its predictor


def test_search_and_meta_test_score_one_checkpoint_identically(trained, tmp_path):
    """The search takes the same path as meta-test (the registry, then predict): one checkpoint, one ranking."""
    import dataclasses

    from dass.evaluate import method_scores
    from dass.predictor.checkpoint import load_predictor
    from dass.search import score_candidates

    cfg, rec, _ = trained
    ckpt = Path(cfg.meta.out) / "seeds" / "dass" / "seed0" / "best.pt"
    via_meta_test = method_scores("dass", rec, {"dass": [load_predictor(ckpt)]}, cfg)[0]
    learned = dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, inner_lr="learned"))
    via_search = score_candidates(learned, rec, "dass", str(ckpt)).numpy()
    assert (via_search == via_meta_test).all()
    # the authors' search (inner rates reset) scores otherwise, by design
    initial = dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, inner_lr="initial"))
    assert not (score_candidates(initial, rec, "dass", str(ckpt)).numpy() == via_meta_test).all()


def test_several_runs_are_scored_as_their_seed_ensemble(trained):
    from dass.search import score_candidates
    from dass.stats import standardised

    cfg, rec, preds = trained
    seed0 = str(Path(cfg.meta.out) / "seeds" / "dass" / "seed0" / "best.pt")
    one = score_candidates(cfg, rec, "dass", [seed0])
    two = score_candidates(cfg, rec, "dass", [seed0, seed0])
    assert torch.allclose(two, torch.from_numpy(standardised(one.numpy())[0]))   # z-scores of the one run
    assert abs(float(two.mean())) < 1e-9 and abs(float(two.std()) - 1) < 1e-9
