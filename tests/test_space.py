import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dass.errors import ArchError
from dass.nets import ResNet
from dass.space import Arch, SearchSpace

PAPER = SearchSpace()
ARCHS = PAPER.sample_many(20, rng=123)


def test_paper_encoding_is_181():
    assert PAPER.encoding_dim == 181
    assert PAPER.encode(PAPER.teacher()).shape == (181,)


def test_teacher_is_largest_member():
    t = PAPER.teacher()
    assert t.depths == (5, 5, 5, 5)
    assert t.widths == ((32,) * 5, (64,) * 5, (128,) * 5, (256,) * 5)
    assert all(PAPER.macs(a) <= PAPER.macs(t) for a in ARCHS)
    assert all(PAPER.params(a, 40) <= PAPER.params(t, 40) for a in ARCHS)


def test_width_choices_paper():
    assert PAPER.choices[0] == (16, 18, 20, 22, 24, 26, 28, 30, 32)
    assert PAPER.choices[3][0] == 128 and PAPER.choices[3][-1] == 256


def test_sampling_is_seeded_and_in_space():
    a = PAPER.sample_many(10, rng=7)
    b = PAPER.sample_many(10, rng=7)
    c = PAPER.sample_many(10, rng=8)
    assert a == b and a != c
    assert len(set(a)) == 10
    for x in a:
        PAPER.validate(x)


def test_sampling_covers_depths_and_widths():
    archs = PAPER.sample_many(300, rng=0)
    depths = {d for a in archs for d in a.depths}
    widths = {w for a in archs for w in a.widths[0]}
    assert depths == {1, 2, 3, 4, 5}
    assert widths == set(PAPER.choices[0])


@pytest.mark.parametrize("arch", ARCHS, ids=str)
def test_encoding_layout_roundtrip(arch):
    enc = PAPER.encode(arch)
    k = len(PAPER.width_multipliers)
    oh = enc[:-1].reshape(4, 5, k)
    for s in range(4):
        for b in range(5):
            if b < arch.depths[s]:
                assert oh[s, b].sum() == 1
                assert PAPER.choices[s][int(oh[s, b].argmax())] == arch.widths[s][b]
            else:
                assert oh[s, b].sum() == 0
    assert enc[-1] == pytest.approx(PAPER.macs(arch) / PAPER.macs(PAPER.teacher()))
    assert PAPER.decode(enc) == arch


@pytest.mark.parametrize("arch", ARCHS[:10], ids=str)
def test_macs_match_flop_counter(arch):
    model = ResNet(arch, 40).eval()
    x = torch.zeros(1, 3, 64, 64)
    with FlopCounterMode(display=False) as fc:
        model(x)
    assert fc.get_total_flops() // 2 == PAPER.macs(arch, 64, num_classes=40)


@pytest.mark.parametrize("arch", ARCHS, ids=str)
def test_params_match_numel(arch):
    model = ResNet(arch, 40)
    assert sum(p.numel() for p in model.parameters()) == PAPER.params(arch, 40)


def test_small_space_counts(small_space):
    for a in small_space.sample_many(5, rng=1):
        m = ResNet(a, 7, small_space.stage_strides)
        with FlopCounterMode(display=False) as fc:
            m(torch.zeros(1, 3, 16, 16))
        assert fc.get_total_flops() // 2 == small_space.macs(a, 16, 7)
    assert small_space.encoding_dim == 4 * 3 * 3 + 1


def test_golden_teacher_counts():
    # fixed numbers for the paper teacher: catches silent changes in the counting rules
    t = PAPER.teacher()
    assert PAPER.params(t, 40) == 7_467_336
    assert PAPER.macs(t, 64, 40) == 1_456_875_520
    assert PAPER.params(t, 0) == sum(p.numel() for n, p in ResNet(t, 1).named_parameters() if not n.startswith("fc"))


@pytest.mark.parametrize("bad, msg", [
    (Arch([0, 1, 1, 1], [[], [32], [64], [128]]), "depth 0"),
    (Arch([6, 1, 1, 1], [[32] * 6, [32], [64], [128]]), "depth 6"),
    (Arch([1, 1, 1, 1], [[17], [32], [64], [128]]), "width 17"),
    (Arch([1, 1, 1], [[32], [64], [128]]), "3 stages"),
])
def test_bad_architectures(bad, msg):
    with pytest.raises(ArchError, match=msg):
        PAPER.validate(bad)


def test_arch_shape_errors():
    with pytest.raises(ArchError, match="depth 2 but 1 block widths"):
        Arch([2, 1, 1, 1], [[32], [64], [128], [256]])
    with pytest.raises(ArchError, match="4 depths but 3"):
        Arch([1, 1, 1, 1], [[32], [64], [128]])


def test_from_authors_trims():
    a = Arch.from_authors([1, 2, 1, 1], [[32] * 5, [64] * 5, [128] * 5, [256] * 5])
    assert a.widths == ((32,), (64, 64), (128,), (256,))
    assert Arch.from_dict(a.to_dict()) == a


def test_last_block_full_width_fixes_only_that_width():
    free, full = SearchSpace(), SearchSpace(last_block_full_width=True)
    a, b = free.sample_many(200, rng=5), full.sample_many(200, rng=5)
    assert all(x.out_channels == 256 for x in b) and any(x.out_channels != 256 for x in a)
    # the same draws: every other width and every depth agree, the encoding keeps its 181 entries
    for x, y in zip(a, b):
        assert x.depths == y.depths and x.widths[:-1] == y.widths[:-1] and x.widths[-1][:-1] == y.widths[-1][:-1]
    assert full.encoding_dim == 181 and full.encode(b[0]).shape == (181,)
    assert full.decode(full.encode(b[0])) == b[0]
    assert {x.depths[-1] for x in b} == {1, 2, 3, 4, 5}
    assert len({x.widths[-1][0] for x in b if x.depths[-1] > 1}) == 9   # the other stage-4 slots still vary
    assert full.smallest().out_channels == 256 and full.validate(full.teacher()) == full.teacher()
    narrow = next(x for x in a if x.out_channels != 256)
    with pytest.raises(ArchError, match=r"last block has width \d+, .*\(space.last_block_full_width=true\)"):
        full.validate(narrow)


def test_last_block_full_width_from_config():
    from dass.config import load_config

    assert SearchSpace.from_config(load_config("configs/paper.yaml", [])).last_block_full_width
    assert not SearchSpace.from_config(load_config("configs/demo.yaml", [])).last_block_full_width
