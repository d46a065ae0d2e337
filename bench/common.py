"""Shared pieces of the benchmarks: machine description, timing, GPU peak, result lines.

Every benchmark prints a header describing the machine (CPU model from /proc/cpuinfo, cores, torch
version, GPU), then one line per figure with the load average when it was taken -- the figures are
meant to be pasted into ``bench/RESULTS.md`` with the command that produced them. Repeats are
summarised by their median (robust to a neighbour process stealing a core for a moment).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent   # the checkout (the package itself is installed: script/setup_env.sh)

# OpenMP threads that spin while waiting at a barrier are a disaster when another process holds a
# core: measured on the 2-core test machine under load, a KD step with 2 threads ran 13x slower than
# with 1. Passive waiting (threads sleep at once) removes that without costing anything measurable
# here. It must be set before the OpenMP runtime starts, i.e. before torch is imported; an explicit
# OMP_WAIT_POLICY in the environment wins (OMP_WAIT_POLICY=ACTIVE restores the default behaviour).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' datasheets. Matched by
# substring of torch.cuda.get_device_name(); the first match wins, so specific names come first.
BF16_PEAK_TFLOPS = [
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("GH200", 989.0),
    ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0),
    ("A10G", 70.0), ("A10", 125.0), ("RTX 4090", 165.0), ("RTX 3090", 71.0), ("V100", 125.0),  # V100: fp16
    ("T4", 65.0),  # T4: fp16
]


# --------------------------------------------------------------------------------------------- #
# machine
# --------------------------------------------------------------------------------------------- #

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def loadavg() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def git_rev() -> str:
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                           timeout=10)
        return r.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info() -> dict:
    info = {"date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "cores": cpu_cores(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "git": git_rev(), "cuda": None,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except ImportError:
        info["torchvision"] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["cuda"] = f"{p.name}, {p.total_memory / 2 ** 30:.0f} GiB, {p.multi_processor_count} SMs"
    return info


def print_header(title: str, args: Optional[argparse.Namespace] = None) -> dict:
    info = machine_info()
    print(f"# {title}")
    print(f"# command: {' '.join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])}")
    print(f"# machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
          f"(threads {info['torch_threads']}), torchvision {info['torchvision']}, python {info['python']}")
    print(f"# gpu: {info['cuda'] or 'none (CPU only)'}; git {info['git']}; {info['date']}")
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS") if k in os.environ}
    print(f"# environment: {env or 'no OMP/MKL variables set'}")
    print(f"# load average at start: {fmt_load(loadavg())}")
    return info


def fmt_load(la: Sequence[float]) -> str:
    return "/".join(f"{x:.2f}" for x in la)


# --------------------------------------------------------------------------------------------- #
# timing
# --------------------------------------------------------------------------------------------- #

def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_call(fn: Callable[[], object], device="cpu") -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def repeat(fn: Callable[[], object], repeats: int, warmup: int = 1, device="cpu") -> list[float]:
    """Seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return [time_call(fn, device) for _ in range(repeats)]


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def spread(xs: Sequence[float]) -> str:
    """``median [min..max]`` of rates or times, for the printed line."""
    return f"{median(xs):.4g} [{min(xs):.4g}..{max(xs):.4g}]"


# --------------------------------------------------------------------------------------------- #
# GPU peak
# --------------------------------------------------------------------------------------------- #

def table_peak_tflops(name: str) -> Optional[float]:
    for key, tf in BF16_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return tf
    return None


def measured_matmul_tflops(device="cuda", n: int = 8192, dtype=torch.bfloat16, iters: int = 20) -> float:
    """Best bf16 matmul throughput over ``iters`` n x n x n products: a practical ceiling."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(iters):
        best = min(best, time_call(lambda: a @ b, device))
    return 2 * n ** 3 / best / 1e12


def gpu_peak(device="cuda", measure: bool = True) -> dict:
    """``{'name', 'table_tflops', 'measured_tflops'}`` for the fraction-of-peak figures."""
    name = torch.cuda.get_device_name(torch.device(device))
    out = {"name": name, "table_tflops": table_peak_tflops(name), "measured_tflops": None}
    if measure:
        out["measured_tflops"] = measured_matmul_tflops(device)
    return out


# --------------------------------------------------------------------------------------------- #
# output
# --------------------------------------------------------------------------------------------- #

class Reporter:
    """Prints ``figure: value  (load avg x/y/z)`` lines and optionally writes them as JSON."""

    def __init__(self, info: dict, json_path: Optional[str] = None):
        self.info, self.json_path, self.rows = info, json_path, []

    def figure(self, name: str, value, unit: str = "", note: str = "") -> None:
        la = loadavg()
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{name}: {shown} {unit}".rstrip() + f"   (load avg {fmt_load(la)}){'  ' + note if note else ''}",
              flush=True)
        self.rows.append({"figure": name, "value": value, "unit": unit, "note": note, "loadavg": list(la)})

    def close(self) -> None:
        if self.json_path:
            Path(self.json_path).write_text(json.dumps({"machine": self.info, "command": sys.argv,
                                                        "figures": self.rows}, indent=2) + "\n")


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a smaller run that finishes in under a minute")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all cores)")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return p


def setup(args) -> torch.device:
    torch.set_num_threads(args.threads if args.threads > 0 else cpu_cores())
    if args.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(args.device)
