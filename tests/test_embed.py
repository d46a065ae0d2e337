import pytest
import torch

from dass.embed import functional_map, noise_input, remapped_map, student_map
from dass.nets import ResNet
from dass.remap import remapped_student
from dass.space import SearchSpace

PAPER = SearchSpace()


@pytest.fixture(scope="module")
def teacher(paper_teacher):
    return paper_teacher


def test_noise_is_fixed():
    a, b = noise_input(64, 2, seed=3), noise_input(64, 2, seed=3)
    assert a.shape == (2, 3, 64, 64) and torch.equal(a, b)
    assert not torch.equal(a, noise_input(64, 2, seed=4))


def test_teacher_map_shape(teacher):
    m = functional_map(teacher, noise_input(64))
    assert m.shape == (256, 8, 8)
    assert teacher.training is False


@pytest.mark.parametrize("strategy", ["copy_paste_first", "copy_paste_last", "uniform", "copy_paste_uniform",
                                      "copy_paste_uniform_last"])
@pytest.mark.parametrize("k", range(6))
def test_fast_path_equals_module_path(teacher, strategy, k):
    arch = PAPER.sample_many(6, rng=99)[k]
    noise = noise_input(64, 2, seed=1)
    slow = functional_map(remapped_student(teacher, arch, strategy), noise, channels=256)
    fast = remapped_map(teacher, arch, noise, strategy, channels=256)
    assert fast.shape == (256, 8, 8)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    # zero padding beyond the student's last width
    assert fast[arch.out_channels:].abs().sum() == 0


def test_teacher_as_student_equals_teacher(teacher):
    noise = noise_input(64)
    torch.testing.assert_close(student_map(teacher, PAPER.teacher(), noise), functional_map(teacher, noise),
                               rtol=1e-5, atol=1e-6)


def test_random_init_differs(teacher):
    arch = PAPER.sample(5)
    noise = noise_input(64)
    r1 = student_map(teacher, arch, noise, "random", channels=256, seed=1)
    r2 = student_map(teacher, arch, noise, "random", channels=256, seed=1)
    assert torch.equal(r1, r2)
    assert not torch.allclose(r1, student_map(teacher, arch, noise, channels=256))
