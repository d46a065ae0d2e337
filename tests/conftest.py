import os
from pathlib import Path

import pytest
import torch

# The package is imported as installed (script/test.sh installs it editable): no sys.path patching.
# The markers (gpu, slow) are declared in pyproject.toml.
ROOT = Path(__file__).resolve().parent.parent
# Two intra-op threads in one process; one per worker when script/test.sh runs a worker per core (xdist).
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: fastest for tiny models, and bit-identity checks need a fixed count."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


_SCRATCH = {"__pycache__", ".pytest_cache", ".venv", ".ipynb_checkpoints"}


@pytest.fixture(scope="session", autouse=True)
def repository_left_clean():
    """No test may write into the checkout (a config missing a tmp path falls back to e.g. ./runs)."""
    before = set(os.listdir(ROOT))
    yield
    new = sorted(set(os.listdir(ROOT)) - before - _SCRATCH)
    assert not new, f"the tests wrote {new} into the repository root; point the config's paths at tmp_path"


@pytest.fixture
def small_space():
    from dass.space import SearchSpace
    return SearchSpace(stage_widths=[8, 16, 24, 32], max_depth=3, width_multipliers=[0.5, 0.75, 1.0],
                       image_size=16)


@pytest.fixture
def paper_space():
    from dass.space import SearchSpace
    return SearchSpace()


@pytest.fixture(scope="session")
def paper_teacher():
    """The paper's teacher (10 classes) with non-trivial BN statistics and affine values, so that slicing
    and remapping them is really exercised."""
    from dass.nets import ResNet
    from dass.space import SearchSpace

    torch.manual_seed(0)
    t = ResNet(SearchSpace().teacher(), 10)
    with torch.no_grad():
        for m in t.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1.0, 0.1)
                m.bias.normal_(0.0, 0.1)
    return t.eval()
