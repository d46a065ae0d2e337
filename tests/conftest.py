import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one)")
    config.addinivalue_line("markers", "slow: long-running end-to-end test")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def small_space():
    from dass.space import SearchSpace
    return SearchSpace(stage_widths=[8, 16, 24, 32], max_depth=3, width_multipliers=[0.5, 0.75, 1.0],
                       image_size=16)


@pytest.fixture
def paper_space():
    from dass.space import SearchSpace
    return SearchSpace()
