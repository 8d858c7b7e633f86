"""Fault probes on the emulator (issue 16), driven by scripts/probe-faults.

For each fault rate and seed: a fresh management account and organization; the reference
example without its portfolios (4 units, 4 accounts created and moved into their units, the
stack-set roles, one stack set in two environments, every stage applied); faults injected
for that organization (tests/emulator/faults.py: the rate split 35% throttling, 25% HTTP 503,
20% connection resets, 20% lost responses, seeded); `estate apply` run until it exits 0 (at
most MAX_RUNS), each run timed; then, faults off, `estate plan` must be a no-op and nothing
may exist twice (accounts by email and name, units by parent and name, stack sets, stack
instances by account and region). Then what one throttle costs: a no-op `estate plan` with no
fault, and with exactly one request throttled, in estate's retry mode (standard) and in
adaptive mode (AWS_RETRY_MODE=adaptive).

Prints one Markdown table per probe (the README's Reliability section has them).

Usage: probe_faults.py ESTATE_BIN ENDPOINT   (the emulator already listening)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import TIMINGS, bootstrap, configure  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RATES = [0.0, 0.1, 0.3]
SEEDS = [1, 2, 3]
MAX_RUNS = 5
SPLIT = {"Throttle": 0.35, "ServerError": 0.25, "Reset": 0.2, "LostResponse": 0.2}


def emulator(endpoint: str, target: str, body: dict) -> dict:
    request = urllib.request.Request(
        endpoint + "/",
        data=json.dumps(body).encode(),
        headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
    )
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read() or b"{}")


def manifest(directory: Path) -> None:
    shutil.copytree(REPO / "examples/environments/ml-platform", directory)
    estate = directory / "estate.yaml"
    estate.write_text(estate.read_text().replace(", portfolios.yaml", ""))
    envs = directory / "environments.yaml"
    envs.write_text(envs.read_text().replace("  approval: manual\n  protected: true\n", ""))


def environment(endpoint: str, account: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k not in ("ESTATE_LOG", "RUST_LOG")
    }
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        ESTATE_POLL_MS=os.environ.get("ESTATE_POLL_MS", "20"),
        NO_COLOR="1",
    )
    env.update(bootstrap(endpoint, account))
    configure(endpoint, account)
    return env


def duplicates(endpoint: str, env: dict[str, str]) -> list[str]:
    session = boto3.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env["AWS_SESSION_TOKEN"],
        region_name="us-east-1",
    )
    org = session.client("organizations", endpoint_url=endpoint)
    cfn = session.client("cloudformation", endpoint_url=endpoint)
    twice = lambda items: [k for k, n in Counter(items).items() if n > 1]  # noqa: E731
    accounts = org.list_accounts()["Accounts"]
    found = [f"account {e}" for e in twice(a["Email"].lower() for a in accounts)]
    found += [f"account named {n}" for n in twice(a["Name"] for a in accounts)]
    parents = [org.list_roots()["Roots"][0]["Id"]]
    while parents:
        parent = parents.pop()
        units = org.list_organizational_units_for_parent(ParentId=parent)["OrganizationalUnits"]
        found += [f"unit {n} under {parent}" for n in twice(u["Name"] for u in units)]
        parents += [u["Id"] for u in units]
    sets = [s["StackSetName"] for s in cfn.list_stack_sets()["Summaries"]]
    found += [f"stack set {n}" for n in twice(sets)]
    for name in sets:
        instances = cfn.list_stack_instances(StackSetName=name)["Summaries"]
        found += [
            f"instance {name}/{i}"
            for i in twice(f"{x['Account']}/{x['Region']}" for x in instances)
        ]
    return found


def estate(binary: str, args: list[str], env: dict[str, str]) -> tuple[int, float, str]:
    start = time.monotonic()
    done = subprocess.run([binary, *args], env=env, capture_output=True, text=True)
    return done.returncode, time.monotonic() - start, done.stdout + done.stderr


def converge(binary: str, endpoint: str, account: str, rate: float, seed: int) -> list[str]:
    env = environment(endpoint, account)
    with tempfile.TemporaryDirectory() as work:
        directory = Path(work) / "manifest"
        manifest(directory)
        faults = {k: rate * share for k, share in SPLIT.items()} if rate else {}
        emulator(endpoint, "EstateEmulator.Faults",
                 {"ManagementAccount": account, "Seed": seed, **faults})
        runs: list[tuple[int, float]] = []
        last = ""
        while len(runs) < MAX_RUNS:
            code, seconds, last = estate(binary, ["apply", str(directory), "--auto-approve"], env)
            runs.append((code, seconds))
            if code == 0:
                break
        stats = emulator(endpoint, "EstateEmulator.FaultStats", {"ManagementAccount": account})
        emulator(endpoint, "EstateEmulator.Faults", {"ManagementAccount": account})
        plan, _, plan_out = estate(binary, ["plan", str(directory)], env)
    if runs[-1][0] != 0:
        sys.stderr.write(f"rate {rate} seed {seed}: last run:\n{last[-3000:]}\n")
    if plan != 0:
        sys.stderr.write(f"rate {rate} seed {seed}: plan after:\n{plan_out[-3000:]}\n")
    twice = duplicates(endpoint, env)
    injected = sum(stats.get(k, 0) for k in SPLIT)
    return [
        f"{rate:.0%}",
        str(seed),
        str(len(runs)) if runs[-1][0] == 0 else f"not in {MAX_RUNS}",
        " + ".join(f"{s:.1f} s" for _, s in runs),
        f"{stats.get('Requests', 0)} / {injected}",
        ", ".join(f"{stats.get(k, 0)}" for k in SPLIT) if rate else "-",
        "no-op" if plan == 0 else f"exit {plan}",
        ", ".join(twice) if twice else "none",
    ]


def throttle_cost(binary: str, endpoint: str, account: str) -> list[list[str]]:
    env = environment(endpoint, account)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        directory = Path(work) / "manifest"
        manifest(directory)
        code, _, out = estate(binary, ["apply", str(directory), "--auto-approve"], env)
        assert code == 0, out[-3000:]
        for label, extra, throttled in [
            ("no fault", {}, []),
            ("1 throttle, estate's default retry mode", {}, [5]),
            ("1 throttle, adaptive (AWS_RETRY_MODE=adaptive)", {"AWS_RETRY_MODE": "adaptive"}, [5]),
        ]:
            times = []
            for _ in range(3):
                emulator(endpoint, "EstateEmulator.Faults",
                         {"ManagementAccount": account, "ThrottleRequests": throttled})
                code, seconds, out = estate(binary, ["plan", str(directory)], {**env, **extra})
                assert code == 0, out[-3000:]
                times.append(seconds)
            emulator(endpoint, "EstateEmulator.Faults", {"ManagementAccount": account})
            rows.append([label, " / ".join(f"{t:.2f} s" for t in times)])
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    binary, endpoint = sys.argv[1:3]
    rows = []
    k = 0
    for rate in RATES:
        for seed in SEEDS if rate else SEEDS[:1]:
            rows.append(converge(binary, endpoint, f"2209876{k:05d}", rate, seed))
            k += 1
            print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    print(table(
        ["faults", "seed", "runs to converge", "seconds per run", "requests / faults",
         "throttled, 503, reset, lost", "plan after", "duplicates"],
        rows,
    ))
    print()
    print(table(["no-op plan", "wall clock, 3 runs"], throttle_cost(binary, endpoint, f"2209876{k:05d}")))
    converged = all(r[2] in ("1", "2") and r[6] == "no-op" and r[7] == "none" for r in rows)
    return 0 if converged else 3


if __name__ == "__main__":
    sys.exit(main())
