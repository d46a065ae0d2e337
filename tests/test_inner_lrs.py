"""Inner learning rates: learned (Meta-SGD) or fixed, and which ones the search adapts with."""
import pytest
import torch
from test_meta import small_cfg

from dass.db.records import load_split_records
from dass.predictor.checkpoint import load_predictor
from dass.predictor.inference import predict
from dass.predictor.trainer import MetaTrainer
from dass.search import score_candidates
from dass.testing import fixture_db_for_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short seeded meta-training (Meta-SGD) and its best checkpoint."""
    tmp = tmp_path_factory.mktemp("inner")
    cfg = small_cfg(tmp, "meta.episodes=6", "meta.eval_every=3")
    fixture_db_for_config(cfg)
    splits = [load_split_records(cfg, m) for m in ("meta_train", "meta_valid", "meta_test")]
    s = MetaTrainer(cfg, *splits, cfg.meta.out, "cpu", progress=False).run()
    return tmp, cfg, splits, s["checkpoint"]


def test_search_adapts_with_learned_or_initial_inner_rates(trained):
    tmp, cfg, (_, _, test), ckpt = trained
    rec = test[0]
    pred = load_predictor(ckpt)
    assert any(not torch.allclose(v, torch.full_like(v, 0.005)) for v in pred.inner_lrs.values())   # learned
    learned = score_candidates(cfg, rec, "dass", ckpt)
    initial = score_candidates(small_cfg(tmp, "search.inner_lr=initial"), rec, "dass", ckpt)
    assert not torch.allclose(learned, initial)
    assert torch.equal(learned, predict(pred, rec).double())                          # meta-test's prediction
    assert torch.equal(initial, predict(pred.with_initial_inner_lrs(), rec).double())
    assert all(torch.equal(v, torch.full_like(v, 0.005)) for v in pred.with_initial_inner_lrs().inner_lrs.values())


def test_fixed_scalar_inner_rate_is_not_learned(trained):
    tmp, _, splits, ckpt = trained
    cfg = small_cfg(tmp, "meta.episodes=6", "meta.eval_every=3", "meta.learn_inner_lr=false",
                    f"meta.out={tmp / 'fixed'}")
    t = MetaTrainer(cfg, *splits, cfg.meta.out, "cpu", progress=False)
    assert all(not v.requires_grad for v in t.inner_lrs.values())
    s = t.run()
    lrs = load_predictor(s["checkpoint"]).inner_lrs
    assert all(torch.equal(v, torch.full_like(v, 0.005)) for v in lrs.values())
    meta_sgd = load_predictor(ckpt).model
    fixed = load_predictor(s["checkpoint"]).model
    assert any(not torch.equal(a, b) for a, b in zip(meta_sgd.state_dict().values(), fixed.state_dict().values()))
