#!/usr/bin/env python3
"""bench/inventory: `pantheros hosts --json` on generated fleets.

For fleets of 1, 10 and 50 hosts it measures
  * the wall time of `pantheros hosts --json`, as a ratio to a bare
    `nix eval --json` that reads the same data (the floor: pantheros cannot
    be faster than the one evaluation it runs), median of several runs;
  * how many `nix` processes one `pantheros hosts` run spawns (goal: 1
    when no host fails), counted by a `nix` shim first on PATH.

Usage: python3 bench/inventory/run.py [--runs N] [--sizes 1,10,50]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "fleet")
FEATURES = ["--extra-experimental-features", "nix-command flakes"]


def fleet_flake(n):
    hosts = "\n".join(
        f'''        host-{i:03d} = host {{ name = "host-{i:03d}"; tags = [ "bench" "rack-{i % 5}" ]; }};'''
        for i in range(n)
    )
    return f'''{{
  outputs = {{ self }}:
    let
      mkSystem = import ./system.nix;
      host = {{ name, tags }}: {{
        config = {{
          system.build.toplevel = mkSystem {{ inherit name; }};
          pantheros.deployment = {{ targetHost = "${{name}}.example.org"; inherit tags; }};
        }};
      }};
    in {{
      nixosConfigurations = {{
{hosts}
      }};
    }};
}}
'''


def timed(argv, env):
    start = time.perf_counter()
    r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed ({r.returncode}):\n{r.stderr.decode()}")
    return elapsed, r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--sizes", default="1,10,50")
    args = ap.parse_args()

    real_nix = shutil.which("nix")
    if not real_nix:
        sys.exit("bench: nix is not installed (bash scripts/setup)")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path", os.path.join(ROOT, "Cargo.toml")], check=True)
    pantheros = os.path.join(ROOT, "target", "release", "pantheros")

    work = tempfile.mkdtemp(prefix="pantheros-bench-inventory-")
    try:
        shim_dir = os.path.join(work, "shim")
        os.makedirs(shim_dir)
        count_file = os.path.join(work, "nix-calls")
        with open(os.path.join(shim_dir, "nix"), "w") as f:
            f.write(f'#!/bin/sh\necho "nix $1 $2" >> "{count_file}"\nexec {real_nix} "$@"\n')
        os.chmod(os.path.join(shim_dir, "nix"), 0o755)
        env = dict(os.environ, PATH=shim_dir + os.pathsep + os.environ.get("PATH", ""))
        env.pop("PANTHEROS_NIX", None)

        print(f"{'hosts':>5}  {'nix eval (ms)':>13}  {'pantheros (ms)':>14}  {'ratio':>5}  {'nix processes':>13}")
        results = []
        for n in [int(x) for x in args.sizes.split(",")]:
            flake = os.path.join(work, f"fleet-{n}")
            os.makedirs(flake)
            shutil.copy(os.path.join(FIXTURE, "system.nix"), flake)
            with open(os.path.join(flake, "flake.nix"), "w") as f:
                f.write(fleet_flake(n))
            with open(os.path.join(flake, "flake.lock"), "w") as f:
                f.write('{"nodes":{"root":{}},"root":"root","version":7}\n')
            # Both go through the counting shim, so the ratio is fair.
            baseline = [os.path.join(shim_dir, "nix"), *FEATURES, "eval", "--json", f"{flake}#nixosConfigurations",
                        "--apply", "cs: builtins.mapAttrs (n: c: c.config.pantheros.deployment or null) cs"]
            ours = [pantheros, "hosts", "--json", "--flake", flake]
            # Warm up both (the flake is copied to the store once).
            timed(baseline, env)
            _, out = timed(ours, env)
            listed = len(json.loads(out)["hosts"])
            if listed != n:
                sys.exit(f"bench: pantheros listed {listed} hosts, expected {n}")
            if os.path.exists(count_file):
                os.remove(count_file)
            timed(ours, env)
            with open(count_file) as f:
                calls = len(f.read().splitlines())
            base_t, ours_t = [], []
            for _ in range(args.runs):
                base_t.append(timed(baseline, env)[0])
                ours_t.append(timed(ours, env)[0])
            b, o = statistics.median(base_t), statistics.median(ours_t)
            results.append({"hosts": n, "nixEvalMs": round(b * 1000, 1), "pantherosMs": round(o * 1000, 1),
                            "ratio": round(o / b, 2), "nixProcesses": calls})
            print(f"{n:>5}  {b*1000:>13.1f}  {o*1000:>14.1f}  {o/b:>5.2f}  {calls:>13}")
        print(json.dumps({"bench": "inventory", "runs": args.runs, "results": results}))
        if any(r["nixProcesses"] != 1 for r in results):
            sys.exit("bench: pantheros spawned more than one nix process for a healthy fleet")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
