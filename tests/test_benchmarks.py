"""The throughput benchmark runs as its README shows, on a small batch, and its figures are consistent."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_throughput_prints_consistent_ratios_and_both_profiles():
    out = subprocess.run(
        [sys.executable, "benchmarks/throughput.py", "--tasks", "mpe/simple_spread", "--schemes", "happo",
         "--iterations", "1", "--profile", "--set", "n_envs=4", "--set", "rollout_length=25"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True).stdout
    row = next(line for line in out.splitlines() if line.startswith("mpe/simple_spread "))
    fields = row.split()
    raw, pkg, train, ratio, train_pkg = (float(x) for x in fields[2:7])
    collect, update = (float(x.rstrip("%")) for x in fields[7:9])
    assert raw > 0 and pkg > 0 and train > 0
    assert abs(ratio - train / raw) <= 0.006 and abs(train_pkg - train / pkg) <= 0.006
    assert abs(collect + update - 100) <= 1
    # The raw-stepping profile names mpe2's own code; the update profile lists torch operators whose
    # shares of one update's time add up to no more than the whole.
    assert "profile of raw stepping, mpe/simple_spread (4 copies x 25 steps)" in out
    assert "mpe2/" in out
    header = re.search(r"profile of one happo update, mpe/simple_spread \(100 samples\): ([\d.]+) ms", out)
    assert header and float(header.group(1)) > 0
    shares = [float(m) for m in re.findall(r"^  \S+.*?calls\s+[\d.]+ ms\s+([\d.]+)%$", out, re.M)]
    assert len(shares) == 8 and 0 < sum(shares) <= 100.1
    assert shares == sorted(shares, reverse=True)


def test_executors_benchmark_prints_both_wall_times_and_their_ratio(tmp_path):
    import pytest
    pytest.importorskip("ray", reason="benchmarks/executors.py needs Ray: pip install -e \".[ray]\"")
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import tiny_suite
    suite = tmp_path / "tiny.toml"
    suite.write_text(tiny_suite(200, name="tiny"))
    out = subprocess.run([sys.executable, "benchmarks/executors.py", "--suite", str(suite)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    local, ray, ratio = re.search(r"local ([\d.]+) s, ray ([\d.]+) s \(ray/local ([\d.]+)\)", out).groups()
    local, ray, ratio = float(local), float(ray), float(ratio)
    # the times are printed to 0.1 s, the ratio from the unrounded times: allow the rounding's effect
    rounding = 0.05 * (1 / local + ray / local ** 2) + 1e-3
    assert local > 0 and ray > 0 and abs(ray / local - ratio) <= rounding, (local, ray, ratio)
    assert "tiny.toml: best local" in out


def test_throughput_side_by_side_prints_each_runs_ratio_to_the_run_alone():
    out = subprocess.run(
        [sys.executable, "benchmarks/throughput.py", "--tasks", "mpe/simple_spread", "--schemes", "happo",
         "--iterations", "1", "--side-by-side", "2", "--set", "n_envs=4", "--set", "rollout_length=25",
         "--set", "threads=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True).stdout
    train = float(next(line for line in out.splitlines() if line.startswith("mpe/simple_spread ")).split()[4])
    m = re.search(r"2 side by side: train/s each (\d+), (\d+); vs alone ([\d.]+), ([\d.]+)", out)
    assert m, out
    for each, ratio in ((m.group(1), m.group(3)), (m.group(2), m.group(4))):
        assert float(each) > 0 and abs(float(ratio) - float(each) / train) <= 0.01 + 0.5 / train
