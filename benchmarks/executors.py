"""The executors' overhead: one suite's wall time on the ``local`` executor and on ``ray`` (a two-node
Ray cluster this script starts on loopback, one CPU per node, so both get the same two cores), in one
run, each ``--repeats`` times. Prints each wall time, the best of each, and ray/local.

Run: ``python benchmarks/executors.py [--suite benchmarks/quickstart.toml] [--repeats 1]``
(needs ``pip install -e ".[ray]"``). The cluster's nodes use 127.0.0.2 and 127.0.0.3, so all of
Ray's traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bench(suite: Path, out: Path, extra: list[str], env: dict, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(BIN / "harness"), "bench", str(suite), "--out", str(out), "--quiet", "--no-plot", *extra],
                   check=True, env=env, cwd=cwd, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="benchmarks/quickstart.toml")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    suite = Path(args.suite).resolve()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    work = Path(tempfile.mkdtemp(prefix="executors-"))
    port = _port()
    ray = str(BIN / "ray")
    subprocess.run([ray, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.2", "--num-cpus=1",
                    "--include-dashboard=false", "--disable-usage-stats"], check=True, env=env, cwd=work,
                   capture_output=True)
    try:
        subprocess.run([ray, "start", f"--address=127.0.0.2:{port}", "--node-ip-address=127.0.0.3", "--num-cpus=1"],
                       check=True, env=env, cwd=work, capture_output=True)
        ray_args = ["--executor", "ray", "--address", f"127.0.0.2:{port}", "--executor-option",
                    "node_ip_address=127.0.0.2"]
        times: dict[str, list[float]] = {"local": [], "ray": []}
        for k in range(args.repeats):
            times["local"].append(_bench(suite, work / f"local{k}", ["--jobs", "2"], env, work))
            times["ray"].append(_bench(suite, work / f"ray{k}", ray_args, env, work))
            print(f"repeat {k + 1}: local {times['local'][-1]:.1f} s, ray {times['ray'][-1]:.1f} s "
                  f"(ray/local {times['ray'][-1] / times['local'][-1]:.3f})", flush=True)
        best = {name: min(t) for name, t in times.items()}
        print(f"{suite.name}: best local {best['local']:.1f} s (2 worker processes), best ray {best['ray']:.1f} s "
              f"(2 nodes x 1 CPU); ray/local {best['ray'] / best['local']:.3f}")
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
