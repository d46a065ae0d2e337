"""The predictor reads its inputs in the authors' order S | A | T, and a checkpoint converts to and from the
authors' ``model_best.pth.tar`` (their ``PredictorModel`` state dict: ``func_encoder``, ``teacher_encoder``,
``arch_encoder``, ``proj_layers``)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from dass.config import PredictorConfig
from dass.errors import CheckpointError
from dass.predictor.checkpoint import (CKPT_VERSION, LoadedPredictor, load_predictor, settings_of,
                                       to_authors)
from dass.predictor.inference import predict
from dass.predictor.inner import init_inner_lrs
from dass.predictor.model import Predictor
from dass.testing import make_fixture_task

C, ENC = 8, 9       # map channels, encoding length


def authors_fixture(seed: int = 0) -> dict:
    """A checkpoint in the authors' format, written by hand: their module names and their checkpoint keys."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.3  # noqa: E731
    sd = {"func_encoder.conv1.weight": r(6, C, 3, 3), "func_encoder.conv2.weight": r(5, 6, 3, 3),
          "teacher_encoder.conv1.weight": r(6, C, 3, 3), "teacher_encoder.conv2.weight": r(5, 6, 3, 3),
          "arch_encoder.fc.weight": r(4, ENC), "arch_encoder.fc.bias": r(4),
          "proj_layers.0.weight": r(7, 5 + 4 + 5), "proj_layers.0.bias": r(7),
          "proj_layers.2.weight": r(1, 7), "proj_layers.2.bias": r(1)}
    return {"epoch": 120, "optimizer": {"state": {}, "param_groups": []}, "state_dict": sd,
            "last_info": {"va_spearmanr": 0.4}, "min_info": {"va_spearmanr": 0.5}}


def their_forward(sd: dict, fmaps, tmap, enc) -> torch.Tensor:
    """The authors' PredictorModel.forward, written out: S, A, T encoded, concatenated in that order."""
    def func(x, pre):
        x = F.relu(F.conv2d(x, sd[f"{pre}.conv1.weight"], stride=2, padding=1))
        x = F.relu(F.conv2d(x, sd[f"{pre}.conv2.weight"], stride=2, padding=1))
        return x.mean(dim=(2, 3))

    s = func(fmaps, "func_encoder")
    t = func(tmap[None], "teacher_encoder").repeat(len(fmaps), 1)
    a = F.linear(enc, sd["arch_encoder.fc.weight"], sd["arch_encoder.fc.bias"])
    h = torch.tanh(F.linear(torch.cat([s, a, t], dim=1), sd["proj_layers.0.weight"], sd["proj_layers.0.bias"]))
    return F.linear(h, sd["proj_layers.2.weight"], sd["proj_layers.2.bias"]).squeeze(-1)


def test_the_head_reads_s_a_t_as_the_authors_predictor(tmp_path):
    ck = authors_fixture()
    torch.save(ck, tmp_path / "model_best.pth.tar")
    pred = load_predictor(tmp_path / "model_best.pth.tar")
    assert pred.model.inputs == ("S", "T", "A") and pred.settings["valid_spearman"] == 0.5
    assert all(torch.equal(v, torch.full_like(v, 0.005)) for v in pred.inner_lrs.values())   # not saved by them
    g = torch.Generator().manual_seed(1)
    fmaps, tmap, enc = torch.rand(6, C, 4, 4, generator=g), torch.rand(C, 4, 4, generator=g), torch.rand(6, ENC,
                                                                                                          generator=g)
    with torch.no_grad():
        ours = pred.model(fmaps, tmap, enc)
    torch.testing.assert_close(ours, their_forward(ck["state_dict"], fmaps, tmap, enc), rtol=1e-5, atol=1e-6)


def test_round_trip_ours_to_theirs_and_back_scores_the_same(tmp_path):
    from dass.space import SearchSpace

    space = SearchSpace(stage_widths=[4, 8, 8, 8], max_depth=2, width_multipliers=[0.5, 1.0], image_size=8)
    rec = make_fixture_task(space, "x", 0, n_students=6, seed=0)
    pcfg = PredictorConfig(func_hidden=6, func_dim=5, arch_dim=4, head_hidden=7)
    torch.manual_seed(0)
    model = Predictor(pcfg, rec.arch_enc.shape[1], rec.fmaps.shape[1])
    ours = LoadedPredictor(model, init_inner_lrs(model, 0.005, learn=False),
                           {"adapt": True, "second_order": True, "inner_steps": 1, "inner_lr_init": 0.005,
                            "episode": 3})
    theirs = to_authors(ours, valid_spearman=0.25)
    assert set(theirs) == {"epoch", "state_dict", "min_info"} and theirs["min_info"]["va_spearmanr"] == 0.25
    assert {k.split(".")[0] for k in theirs["state_dict"]} == {"func_encoder", "teacher_encoder", "arch_encoder",
                                                               "proj_layers"}
    torch.save(theirs, tmp_path / "theirs.pth.tar")
    back = load_predictor(tmp_path / "theirs.pth.tar")
    torch.testing.assert_close(predict(back, rec), predict(ours, rec))
    # a predictor the authors' model cannot hold is refused with a one-line reason
    pd = Predictor(dataclasses.replace(pcfg, inputs=["S", "T", "A", "D"], dataset_feature_dim=4, dataset_dim=4,
                                       dataset_heads=2), rec.arch_enc.shape[1], rec.fmaps.shape[1])
    with pytest.raises(CheckpointError, match="cannot hold"):
        to_authors(LoadedPredictor(pd, {}, {}))


def test_a_version_1_checkpoint_is_converted_to_the_new_order(tmp_path):
    """Checkpoints written when the head read S | T | A still predict the same after loading."""
    from dass.space import SearchSpace

    space = SearchSpace(stage_widths=[4, 8, 8, 8], max_depth=2, width_multipliers=[0.5, 1.0], image_size=8)
    rec = make_fixture_task(space, "x", 0, n_students=6, seed=0)
    pcfg = PredictorConfig(func_hidden=6, func_dim=5, arch_dim=4, head_hidden=7)
    torch.manual_seed(0)
    model = Predictor(pcfg, rec.arch_enc.shape[1], rec.fmaps.shape[1]).eval()
    want = predict(LoadedPredictor(model, {}, {"adapt": False}), rec)
    # the same function, its head's input columns laid out S | T | A as version 1 stored them
    sd = dict(model.state_dict())
    w = sd["head.0.weight"]
    sd["head.0.weight"] = torch.cat([w[:, :5], w[:, 9:14], w[:, 5:9]], dim=1)      # S(5) A(4) T(5) -> S T A
    torch.save({"version": 1, "model": sd, "spec": model.spec, "meta": {"adapt": False}}, tmp_path / "v1.pt")
    torch.testing.assert_close(predict(load_predictor(tmp_path / "v1.pt"), rec), want)
    torch.save({"version": CKPT_VERSION, "model": sd, "spec": model.spec, "meta": {"adapt": False}},
               tmp_path / "v2.pt")
    assert not torch.allclose(predict(load_predictor(tmp_path / "v2.pt"), rec), want)   # read as is: another model


def test_not_a_predictor_is_refused(tmp_path):
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}}, tmp_path / "teacher.pth.tar")
    with pytest.raises(CheckpointError, match="not the authors' predictor"):
        load_predictor(tmp_path / "teacher.pth.tar")


def test_settings_travel_with_the_checkpoint():
    from dass.config import load_config

    cfg = load_config(None, ["meta.inner_steps=2", "meta.inner_lr_init=0.01"])
    assert settings_of(cfg) == {"adapt": True, "second_order": True, "inner_steps": 2, "inner_lr_init": 0.01}
    model = Predictor(PredictorConfig(func_hidden=6, func_dim=5, arch_dim=4, head_hidden=7), ENC, C)
    p = LoadedPredictor(model, init_inner_lrs(model, 0.3), settings_of(cfg))
    assert p.inner_steps == 2 and p.adapt
    assert all(torch.equal(v, torch.full_like(v, 0.01)) for v in p.with_initial_inner_lrs().inner_lrs.values())
