"""One "mean ± std" convention: the sample standard deviation (ddof = 1), named in every summary."""
import pytest
import torch

from dass.config import load_config
from dass.demo import format_report
from dass.metrics import STD_NOTE, mean_std


def test_mean_std_is_the_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)            # population std would be 0.816
    assert mean_std(torch.tensor([36.0, 40.0])) == pytest.approx((38.0, 2.8284271247461903))
    assert mean_std([42.5]) == (42.5, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def test_demo_report_states_the_convention():
    cfg = load_config("configs/demo.yaml", [])
    d = {"accs": [1.0, 2.0, 3.0], "mean": 2.0, "std": 1.0}
    r = {"spearman": [{"task": "t", "method": "dass", "spearman": 0.5}],
         "distill": {"t": {"dass": d, "random": d, "largest": d}},
         "search": {"t": {"teacher_acc": 50.0}}, "stages": {"tasks": {"reused": True, "seconds": 0}},
         "total_seconds": 1.0}
    text = format_report(cfg, r)
    assert STD_NOTE in text and "| t | 50.00 | 2.00 ± 1.00 |" in text
