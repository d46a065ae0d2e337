"""The predictor (docs/method.md#predictor) and the Set Transformer dataset encoder."""
import itertools
import math

import numpy as np
import pytest
import torch

from dass.config import PredictorConfig
from dass.errors import ConfigError, DataError
from dass.predictor.model import Predictor
from dass.data.features import dataset_features, image_features
from dass.predictor.set_encoder import MAB, DatasetEncoder

C, H, E, FD = 6, 2, 7, 10


def _cfg(inputs, **kw):
    base = dict(inputs=list(inputs), func_hidden=16, func_dim=8, arch_dim=3, head_hidden=4, dataset_dim=8,
                dataset_feature_dim=FD, dataset_heads=2, dataset_num_inducing=3)
    base.update(kw)
    return PredictorConfig(**base)


def _model(inputs, seed=0, **kw):
    torch.manual_seed(seed)
    return Predictor(_cfg(inputs, **kw), E, C)


def _batch(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, C, H, H, generator=g), torch.rand(C, H, H, generator=g), torch.rand(n, E, generator=g),
            torch.randn(3, 4, FD, generator=g))


SUBSETS = [list(s) for r in range(1, 5) for s in itertools.combinations("STAD", r)]


@pytest.mark.parametrize("inputs", SUBSETS, ids=["".join(s) for s in SUBSETS])
@pytest.mark.parametrize("n", [1, 5])
def test_every_input_subset_builds_and_predicts_one_value_per_student(inputs, n):
    model = _model(inputs)
    fm, tm, enc, feats = _batch(n)
    out = model(fm, tm, enc, feats)
    assert out.shape == (n,)
    assert torch.isfinite(out).all()
    # a student's prediction does not depend on which other students share the batch
    if n > 1:
        single = model(fm[2:3], tm, enc[2:3], feats)
        assert torch.allclose(single[0], out[2], atol=1e-6)


def test_removing_an_input_removes_exactly_its_parameters():
    full = _model("STAD")
    names = {k for k, _ in full.named_parameters()}
    prefix = {"S": "student_encoder.", "T": "teacher_encoder.", "A": "arch_encoder.", "D": "dataset_encoder."}
    for x in "STAD":
        rest = [y for y in "STAD" if y != x]
        sub = {k for k, _ in _model(rest).named_parameters()}
        gone = names - sub
        assert gone and all(k.startswith(prefix[x]) or k.startswith("head.0") for k in gone)
        assert not any(k.startswith(prefix[x]) for k in sub)
        # the head's first layer shrinks by the removed input's width
        assert _model(rest).head[0].in_features < full.head[0].in_features


def test_teacher_map_is_encoded_once_and_repeated_for_every_student():
    model = _model("ST")
    fm, tm, enc, _ = _batch(4)
    one = model(fm, tm, enc)
    rep = model(fm, tm.unsqueeze(0).expand(4, -1, -1, -1).clone(), enc)
    assert torch.allclose(one, rep, atol=1e-6)
    # T alone: every student gets the same prediction, equal to the single-student one
    t_only = _model("T")
    out = t_only(fm, tm, enc)
    assert torch.allclose(out, out[0].expand(4)) and torch.allclose(out[:1], t_only(fm[:1], tm, enc[:1]))
    # one teacher per row is honoured
    tms = torch.stack([tm, torch.rand(C, H, H, generator=torch.Generator().manual_seed(7)), tm, tm])
    per_row = t_only(fm, tms, enc)
    assert not torch.allclose(per_row[1], per_row[0]) and torch.allclose(per_row[0], per_row[2])


def test_output_norm_maps_head_units_to_percent():
    model = _model("SA")
    fm, tm, enc, _ = _batch(3)
    raw = model(fm, tm, enc)
    model.set_output_norm(50.0, 10.0)
    assert torch.allclose(model(fm, tm, enc), 50.0 + 10.0 * raw, atol=1e-5)
    assert model.loss_scale == 100.0 and model.spec["output_norm"] == [50.0, 10.0]
    with pytest.raises(DataError):
        model.set_output_norm(0.0, 0.0)


def test_bad_inputs_raise_one_line_errors():
    model = _model("STAD")
    fm, tm, enc, feats = _batch(3)
    cases = [
        (torch.rand(3, C + 1, H, H), tm, enc, feats),       # wrong channel count
        (fm, tm, torch.rand(3, E + 2), feats),             # wrong encoding length
        (fm, tm, enc, None),                               # D without features
        (fm, None, enc, feats),                            # T without the teacher map
        (fm, torch.rand(2, C, H, H), enc, feats),          # 2 teacher maps for 3 students
        (fm, tm, enc, torch.randn(3, 4, FD + 1)),          # wrong feature width
    ]
    for args in cases:
        with pytest.raises(DataError) as e:
            model(*args)
        assert "\n" not in str(e.value)


# --------------------------------------------------------------------------------------------- #
# Set Transformer
# --------------------------------------------------------------------------------------------- #

def test_attention_scale_reference_uses_full_width_textbook_per_head():
    ref, text = MAB(4, 4, 8, 2, "reference"), MAB(4, 4, 8, 2, "textbook")
    assert ref.scale == pytest.approx(math.sqrt(8)) and text.scale == pytest.approx(math.sqrt(4))
    text.load_state_dict(ref.state_dict())
    x = torch.randn(2, 5, 4)
    assert not torch.allclose(ref(x, x), text(x, x))
    with pytest.raises(ConfigError):
        MAB(4, 4, 9, 2)                                    # width not divisible by heads
    with pytest.raises(ConfigError):
        MAB(4, 4, 8, 2, "other")


@pytest.mark.parametrize("block", ["sab", "isab"])
def test_dataset_encoder_is_permutation_invariant_over_classes_and_samples(block):
    torch.manual_seed(0)
    enc = DatasetEncoder(FD, 8, heads=2, num_inducing=3, block=block)
    x = torch.randn(4, 6, FD)
    y = x[torch.randperm(4)][:, torch.randperm(6)]
    a, b = enc(x), enc(y)
    assert a.shape == (8,) and torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, enc(x + 1.0))
    batched = enc(torch.stack([x, x + 1.0]))
    assert batched.shape == (2, 8) and torch.allclose(batched[0], a, atol=1e-5)


def test_dataset_features_shape_determinism_and_errors():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (60, 20, 20, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(3), 20)
    f1 = dataset_features(imgs, labels, 3, samples_per_class=5, seed=1, feature_dim=16)
    f2 = dataset_features(imgs, labels, 3, samples_per_class=5, seed=1, feature_dim=16)
    f3 = dataset_features(imgs, labels, 3, samples_per_class=5, seed=2, feature_dim=16)
    assert f1.shape == (3, 5, 16) and torch.equal(f1, f2) and not torch.equal(f1, f3)
    # more samples than images in a class: drawn with replacement, shape kept
    assert dataset_features(imgs, labels, 3, samples_per_class=30, seed=0, feature_dim=16).shape == (3, 30, 16)
    # greyscale images are accepted; brighter images give different features
    grey = imgs[..., :1]
    assert image_features(grey, feature_dim=16).shape == (60, 16)
    assert not torch.allclose(image_features(imgs[:4], feature_dim=16),
                              image_features(np.clip(imgs[:4].astype(int) + 60, 0, 255).astype(np.uint8),
                                             feature_dim=16))
    with pytest.raises(DataError):
        dataset_features(imgs, labels, 4, samples_per_class=5)          # class 3 has no image
    with pytest.raises(DataError):
        dataset_features(imgs, labels[:10], 3)
