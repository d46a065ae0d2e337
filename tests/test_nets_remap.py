import pytest
import torch

from dass.errors import ArchError, CheckpointError
from dass.nets import ResNet
from dass.train.checkpoints import load_model_checkpoint
from dass.remap import STRATEGIES, remap, remapped_student
from dass.space import Arch, SearchSpace

PAPER = SearchSpace()
ARCHS = PAPER.sample_many(20, rng=321)


@pytest.fixture(scope="module")
def teacher(paper_teacher):
    return paper_teacher


@pytest.mark.parametrize("arch", ARCHS, ids=str)
def test_forward_shapes_and_grads(arch):
    m = ResNet(arch, 10)
    x = torch.randn(2, 3, 32, 32)
    logits, maps = m(x, return_features=True)
    assert logits.shape == (2, 10)
    assert [t.shape[1] for t in maps] == [ws[-1] for ws in arch.widths]
    assert [t.shape[-1] for t in maps] == [32, 16, 8, 4]
    logits.square().sum().backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


@pytest.mark.parametrize("arch", ARCHS[:5], ids=str)
def test_state_dict_layout(arch):
    keys = list(ResNet(arch, 10).state_dict())
    assert keys[:2] == ["conv1.weight", "bn1.weight"]
    assert keys[-2:] == ["fc.weight", "fc.bias"]
    for s, d in enumerate(arch.depths):
        for b in range(d):
            for part in ("conv1.weight", "bn1.running_var", "conv2.weight", "bn2.bias"):
                assert f"layer{s + 1}.{b}.{part}" in keys
    assert not any("downsample" in k or "shortcut" in k for k in keys)


@pytest.mark.parametrize("arch", ARCHS, ids=str)
def test_copy_paste_first_slices(teacher, arch):
    st = remapped_student(teacher, arch)
    tsd, ssd = teacher.state_dict(), st.state_dict()
    for k, v in ssd.items():
        t = tsd[k]
        if k.endswith("num_batches_tracked"):
            continue
        if k == "fc.bias":
            assert torch.equal(v, t)
        elif k == "fc.weight":
            assert torch.equal(v, t[:, : v.shape[1]])
        elif v.dim() == 4:
            assert torch.equal(v, t[: v.shape[0], : v.shape[1]]), k
        else:
            assert torch.equal(v, t[: v.shape[0]]), k


def test_copy_paste_last_and_uniform_slices(teacher):
    arch = Arch([2, 1, 1, 1], [[16, 32], [40], [128], [200]])
    st = remapped_student(teacher, arch, "copy_paste_last")
    # stage 1 depth 2 takes teacher blocks 3 and 4, last channels
    assert torch.equal(st.layer1[0].conv1.weight, teacher.layer1[3].conv1.weight[-16:, -16:])
    assert torch.equal(st.layer1[1].conv1.weight, teacher.layer1[4].conv1.weight[-32:, -16:])
    assert torch.equal(st.fc.weight, teacher.fc.weight[:, -200:])
    su = remapped_student(teacher, arch, "uniform")
    idx = torch.round(torch.linspace(0, 31, 16)).long()
    assert torch.equal(su.layer1[0].conv1.weight, teacher.layer1[0].conv1.weight[idx][:, idx])
    assert torch.equal(su.layer1[1].bn2.running_mean, teacher.layer1[4].bn2.running_mean)


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "random"])
def test_teacher_to_teacher_is_exact(teacher, strategy):
    st = remapped_student(teacher, PAPER.teacher(), strategy).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(st(x), teacher(x))


def test_random_keeps_init(teacher):
    torch.manual_seed(5)
    s = ResNet(ARCHS[0], 10)
    before = {k: v.clone() for k, v in s.state_dict().items()}
    remap(teacher, s, "random")
    assert all(torch.equal(before[k], v) for k, v in s.state_dict().items())


def test_remap_errors(teacher):
    with pytest.raises(ArchError, match="classes"):
        remap(teacher, ResNet(ARCHS[0], 7))
    with pytest.raises(ValueError, match="unknown remap strategy"):
        remap(teacher, ResNet(ARCHS[0], 10), "nope")
    small_t = ResNet(Arch([1, 1, 1, 1], [[16], [32], [64], [128]]), 10)
    with pytest.raises(ArchError, match="deeper|wider"):
        remap(small_t, ResNet(PAPER.teacher(), 10))


def load_teacher(path, arch, num_classes):
    """The one model loader (dass.train.checkpoints), as a user's teacher without a recorded accuracy."""
    return load_model_checkpoint(path, arch, num_classes, require_acc=False)[0]


def test_load_teacher_roundtrip(tmp_path, teacher):
    sd = {"module." + k: v for k, v in teacher.state_dict().items()}
    p = tmp_path / "model_best.pth.tar"
    torch.save({"state_dict": sd, "epoch": 3}, p)
    t2 = load_teacher(p, PAPER.teacher(), 10).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(t2(x), teacher(x))


def test_load_teacher_errors(tmp_path, teacher):
    p = tmp_path / "t.pth.tar"
    torch.save({"state_dict": teacher.state_dict()}, p)
    with pytest.raises(CheckpointError, match="fc.weight.*shape"):
        load_teacher(p, PAPER.teacher(), 40)
    with pytest.raises(CheckpointError, match="missing key 'layer1.0.conv1.weight'"):
        sd = dict(teacher.state_dict())
        del sd["layer1.0.conv1.weight"]
        torch.save({"state_dict": sd}, p)
        load_teacher(p, PAPER.teacher(), 10)
    bad = tmp_path / "corrupt.pth.tar"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_teacher(bad, PAPER.teacher(), 10)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_teacher(tmp_path / "nope.pth.tar", PAPER.teacher(), 10)


@pytest.mark.parametrize("strategy", ["copy_paste_first", "copy_paste_last"])
def test_full_width_students_need_no_padding_and_take_the_whole_classifier(teacher, strategy):
    from dass.embed import functional_map, noise_input, remapped_map

    space = SearchSpace(last_block_full_width=True)
    noise = noise_input(64, 1, 0)
    for arch in space.sample_many(3, rng=11):
        s = remapped_student(teacher, arch, strategy)
        assert torch.equal(s.fc.weight, teacher.fc.weight) and torch.equal(s.fc.bias, teacher.fc.bias)
        own = functional_map(s, noise)                 # no channels asked: the map as the student gives it
        assert own.shape == (256, 8, 8)
        assert torch.allclose(remapped_map(teacher, arch, noise, strategy, channels=256), own, atol=1e-4)
