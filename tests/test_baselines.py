"""Baselines, metrics and the SVG writer."""
import math
from pathlib import Path

import pytest
import torch

from dass.config import load_config
from dass.errors import ConfigError, DataError
from dass.metrics import kendall, pearson, rank_desc, spearman, topk_true_acc
from dass.predictor.baselines import diswot_score
from dass.predictor.inference import evaluate_task
from dass.predictor.methods import available as all_methods
from dass.predictor.methods import score, trained_variants, variant_config
from dass.testing import make_fixture_task

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def rec(small_space):
    return make_fixture_task(small_space, "x", 0, n_students=12, seed=0)


# --------------------------------------------------------------------------------------------- #
# metrics against hand-computed values
# --------------------------------------------------------------------------------------------- #

def test_metrics_hand_computed():
    x, y = [1, 2, 3, 4], [1, 3, 2, 4]
    assert spearman(x, y) == pytest.approx(0.8)                  # 1 - 6*2/(4*15)
    assert kendall(x, y) == pytest.approx(4 / 6)                 # 5 concordant, 1 discordant pair
    # Pearson of (1,2,3,4) and (2,4,5,9): cov / (sx sy) by hand
    a, b = [1, 2, 3, 4], [2, 4, 5, 9]
    ma, mb = 2.5, 5.0
    cov = sum((p - ma) * (q - mb) for p, q in zip(a, b))
    sa = math.sqrt(sum((p - ma) ** 2 for p in a))
    sb = math.sqrt(sum((q - mb) ** 2 for q in b))
    assert pearson(a, b) == pytest.approx(cov / (sa * sb))
    assert spearman(torch.tensor([3.0, 1.0, 2.0]), [30, 10, 20]) == pytest.approx(1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])) and math.isnan(pearson([1], [2]))
    # top-k: the best true accuracy among the k best-scored; ties keep position order
    acc = [50.0, 70.0, 60.0, 65.0]
    assert topk_true_acc([4, 1, 3, 2], acc, 1) == 50.0
    assert topk_true_acc([4, 1, 3, 2], acc, 3) == 65.0
    assert rank_desc([1, 2, 2, 0]).tolist() == [1, 2, 0, 3]
    with pytest.raises(ValueError):
        spearman([1, 2], [1, 2, 3])


# --------------------------------------------------------------------------------------------- #
# training-free baselines
# --------------------------------------------------------------------------------------------- #

def test_macs_and_params_rank_exactly_by_cost(rec):
    assert torch.equal(score("macs", rec), rec.macs.double())
    assert torch.equal(score("params", rec), rec.params.double())
    # when accuracy grows with MACs the MACs baseline is a perfect ranker
    r = rec.subset(range(len(rec)))
    r.best_acc = torch.log(r.macs.double()).float() + 40
    ev = evaluate_task(score("macs", r), r)
    assert ev["spearman"] == pytest.approx(1.0) and ev["top1_acc"] == ev["best_acc"]


def test_random_is_seeded(rec):
    a, b, c = score("random", rec, seed=3), score("random", rec, seed=3), score("random", rec, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (len(rec),) and float(a.min()) >= 0 and float(a.max()) < 1


def test_diswot_identical_map_scores_maximal(rec):
    t = rec.teacher.fmap
    maps = rec.fmaps.clone()
    maps[5] = t
    s = diswot_score(maps, t)
    assert float(s[5]) == pytest.approx(0.0, abs=1e-6)
    assert int(torch.argmax(s)) == 5 and bool((s[torch.arange(len(s)) != 5] < -1e-6).all())
    # similarity matrices ignore the map's scale
    assert torch.allclose(diswot_score(maps * 3.0, t), s, atol=1e-6)
    # a narrower student (zero-padded channels) is less similar than the full-width copy
    narrow = t.clone().unsqueeze(0)
    narrow[0, t.shape[0] // 2:] = 0
    assert float(diswot_score(narrow, t)[0]) < -1e-3
    rec2 = rec.subset(range(len(rec)))
    rec2.fmaps = maps
    assert torch.allclose(score("diswot", rec2), s.double())
    with pytest.raises(DataError):
        diswot_score(maps[:, :-1], t)


# --------------------------------------------------------------------------------------------- #
# trained baselines / ablations
# --------------------------------------------------------------------------------------------- #

def test_variant_configs_change_exactly_one_thing():
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["meta.out=/tmp/x"])
    assert trained_variants(cfg) == ["metad2a", "dass-no-S", "dass-no-T", "dass-no-A", "dass-no-adapt",
                                     "dass-first-order"]
    assert all_methods(cfg)[:5] == ["dass", "random", "macs", "params", "diswot"]
    m = variant_config(cfg, "metad2a")
    assert m.predictor.inputs == ["D", "A"] and m.meta.adapt is False and m.meta.out == "/tmp/x/baselines/metad2a"
    assert variant_config(cfg, "dass-no-T").predictor.inputs == ["S", "A"]
    fo = variant_config(cfg, "dass-first-order")
    assert fo.meta.second_order is False and fo.meta.adapt and fo.predictor.inputs == cfg.predictor.inputs
    na = variant_config(cfg, "dass-no-adapt")
    assert na.meta.adapt is False and na.meta.second_order == cfg.meta.second_order
    assert cfg.meta.adapt and cfg.predictor.inputs == ["S", "T", "A"]          # the original is untouched
    d = load_config(ROOT / "configs" / "demo.yaml", ["predictor.inputs=[S,T,A,D]", "meta.second_order=false"])
    assert "dass-no-D" in trained_variants(d) and "dass-first-order" not in trained_variants(d)
    with pytest.raises(ConfigError):
        variant_config(cfg, "dass-no-D")
    with pytest.raises(ConfigError):
        score("oracle", None)
    with pytest.raises(ConfigError):
        score("metad2a", None)          # trained: needs a checkpoint or a model


def test_parse_methods():
    from dass.evaluate import parse_methods

    cfg = load_config(ROOT / "configs" / "demo.yaml")
    assert parse_methods("all", cfg)[0] == all_methods(cfg)
    assert parse_methods("none", cfg) == (["dass"], True)
    assert parse_methods("macs, dass-no-A", cfg) == (["dass", "macs", "dass-no-A"], True)
    with pytest.raises(ConfigError):
        parse_methods("macs,flops", cfg)
