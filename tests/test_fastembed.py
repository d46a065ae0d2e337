"""dass.fastembed.remapped_maps is bit-identical to the per-candidate dass.embed.remapped_map."""
import pytest
import torch

from dass.embed import noise_input, remapped_map
from dass.fastembed import chain, remapped_maps
from dass.nets import ResNet


def _teacher(space, classes=5, seed=0):
    torch.manual_seed(seed)
    t = ResNet(space.teacher(), classes, space.stage_strides).eval()
    # non-trivial BN statistics, so a wrong channel selection cannot go unnoticed
    g = torch.Generator().manual_seed(seed + 1)
    for m in t.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return t


@pytest.mark.parametrize("strategy", ["copy_paste_first", "copy_paste_last", "uniform", "copy_paste_uniform",
                                      "copy_paste_uniform_last"])
@pytest.mark.parametrize("stage,num_noise", [(4, 1), (3, 2)])
def test_bit_identical_to_remapped_map_small_space(small_space, strategy, stage, num_noise):
    t = _teacher(small_space)
    archs = small_space.sample_many(40, rng=3) + [small_space.teacher(), small_space.smallest()]
    archs.append(archs[5])                                     # a duplicate
    noise = noise_input(small_space.image_size, num_noise, seed=4)
    c = small_space.stage_widths[stage - 1]
    stats = {}
    fast = remapped_maps(t, archs, noise, strategy, stage, c, stats=stats)
    slow = torch.stack([remapped_map(t, a, noise, strategy, stage, c) for a in archs])
    assert fast.shape == slow.shape and torch.equal(fast, slow)
    assert stats["steps"] < stats["steps_per_candidate_loop"]   # prefixes were shared
    assert stats["cache_hits"] > 0


def test_bit_identical_paper_space_and_input_order_kept(paper_space):
    from dass.space import SearchSpace

    space = SearchSpace(image_size=32)   # the paper's networks; 32 px keeps the test short
    t = _teacher(space, 40)
    archs = space.sample_many(12, rng=11)
    noise = noise_input(32, 1, seed=0)
    fast = remapped_maps(t, archs, noise, channels=256, cache_mb=1)   # a tiny cache: evictions happen
    for k, a in enumerate(archs):
        assert torch.equal(fast[k], remapped_map(t, a, noise, channels=256)), k


def test_shared_prefix_is_computed_once(small_space):
    t = _teacher(small_space)
    archs = small_space.sample_many(30, rng=5)
    chains = [chain(t, a, "copy_paste_first", 4) for a in archs]
    expected = len({c[:i] for c in chains for i in range(1, len(c) + 1)})   # distinct prefixes = trie nodes
    stats = {}
    remapped_maps(t, archs, noise_input(16), channels=32, stats=stats)
    assert stats["steps"] == expected


def test_bad_arguments(small_space):
    t = _teacher(small_space)
    with pytest.raises(ValueError, match="copy strategy"):
        remapped_maps(t, [small_space.teacher()], noise_input(16), "random")
    with pytest.raises(ValueError, match="at least one"):
        remapped_maps(t, [], noise_input(16))


def test_parallel_processes_give_the_same_maps_in_input_order(paper_space):
    from dass.fastembed import remapped_maps_parallel
    from dass.space import SearchSpace

    space = SearchSpace(image_size=32)
    t = _teacher(space, 40)
    archs = space.sample_many(14, rng=2) + [space.teacher()]
    noise = noise_input(32, 1, seed=0)
    one = remapped_maps(t, archs, noise, channels=256)
    two = remapped_maps_parallel(t, archs, noise, channels=256, workers=2)
    assert two.shape == one.shape and torch.equal(two, one)


def test_auto_workers(monkeypatch):
    import os

    from dass.errors import ConfigError
    from dass.fastembed import auto_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(12)), raising=False)
    assert auto_workers(3, 10, "cpu") == 3                   # as given
    assert auto_workers(0, 1000, "cpu") == 8                 # one per core, at most 8
    assert auto_workers(0, 300, "cpu") == 1                  # a small pool: not worth the spawn
    assert auto_workers(0, 1000, "cuda") == 1                # the GPU embeds in process
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    assert auto_workers(0, 1000, "cpu") == 1                 # 2 cores: break-even at best
    with pytest.raises(ConfigError, match="embed.workers"):
        auto_workers(-1, 10, "cpu")
