#!/usr/bin/env python3
"""C round trips through libshmkit beside the Rust ones of `shmkit bench`.

Each run measures, one after the other on the same (loaded) machine:
  C  (bench/rtt.c):    shmkit, ready (poll on the readiness fd), futex, pipe
  Rust (shmkit bench): shmkit, shmkit-ready, raw-futex, pipe   (rtt, 8 bytes)
and prints the per-run ratios of the p50 round trips, then the medians and
ranges over the runs. Needs `cargo build --release -p shmkit-c -p shmkit-cli`.

    python3 crates/shmkit-c/bench/run.py [--runs 3] [--seconds 1]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
REL = os.path.join(ROOT, "target", "release")


def build(tmp):
    lib = os.path.join(REL, "libshmkit_c.so")
    os.symlink(lib, os.path.join(tmp, "libshmkit.so.0"))
    os.symlink("libshmkit.so.0", os.path.join(tmp, "libshmkit.so"))
    exe = os.path.join(tmp, "rtt")
    subprocess.run(
        ["gcc", "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror",
         "-I", os.path.join(ROOT, "crates/shmkit-c/include"),
         os.path.join(ROOT, "crates/shmkit-c/bench/rtt.c"), "-o", exe,
         "-L", tmp, "-lshmkit", "-Wl,-rpath," + tmp],
        check=True)
    return exe


def c_run(exe, mode, seconds):
    out = subprocess.run([exe, mode, str(seconds)], check=True, capture_output=True, text=True).stdout
    _, p50, _mean, _n = out.split()
    return int(p50)


def rust_run(seconds):
    cmd = [os.path.join(REL, "shmkit"), "bench", "--scenario", "rtt",
           "--transport", "shmkit", "--transport", "shmkit-ready",
           "--transport", "raw-futex", "--transport", "pipe",
           "--duration", f"{int(seconds * 1000)}ms", "--warmup", "200ms", "--json", "-"]
    report = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    rows = report["results"]
    return {r["transport"]: r["p50_ns"] for r in rows}, report["machine"].get("load_average")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args()
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        exe = build(tmp)
        for run in range(args.runs):
            c = {m: c_run(exe, m, args.seconds) for m in ["shmkit", "ready", "futex", "pipe"]}
            rust, load = rust_run(args.seconds)
            r = {
                "C shmkit / Rust shmkit": c["shmkit"] / rust["shmkit"],
                "C pipe / C shmkit": c["pipe"] / c["shmkit"],
                "C ready / C futex": c["ready"] / c["futex"],
                "Rust shmkit-ready / raw-futex": rust["shmkit-ready"] / rust["raw-futex"],
                "Rust pipe / Rust shmkit": rust["pipe"] / rust["shmkit"],
            }
            print(f"run {run + 1}: load {load}")
            print("  p50 ns  C: " + ", ".join(f"{k} {v}" for k, v in c.items()))
            print("  p50 ns  Rust: " + ", ".join(f"{k} {v}" for k, v in rust.items()))
            for k, v in r.items():
                print(f"  {k}: {v:.2f}")
                ratios.setdefault(k, []).append(v)
    print(f"medians over {args.runs} runs (range):")
    for k, v in ratios.items():
        print(f"  {k}: {statistics.median(v):.2f} ({min(v):.2f} .. {max(v):.2f})")


if __name__ == "__main__":
    sys.exit(main())
