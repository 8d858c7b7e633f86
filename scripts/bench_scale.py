"""Scale benchmark on the emulator (issue 12), driven by scripts/bench-scale.

For each N: a fresh management account and organization on the emulator; a manifest of N
accounts in 10 units, one environment, one self-managed stack set, no portfolio; `estate
apply` (creates the units, the accounts, the stack-set roles and the N instances), timed;
then a no-op `estate plan --format json --stats`, whose AWS calls by operation are printed
next to the floor: the organization reads, one DescribeStackSet per managed stack set,
ceil(instances/100) ListStackInstances per stack set, plus the prerequisite checks. The
managed stack sets are two: the manifest's, and the execution-role bootstrap estate deploys
for self-managed stack sets (a service-managed stack set in every target account).

Usage: bench_scale.py ESTATE_BIN ENDPOINT N [N...]   (the emulator already listening)
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UNITS = 10
# Organizations' ListAccountsForParent answers at most 20 accounts a page (API reference,
# MaxResults); the other lists here fit in one page.
ACCOUNTS_PAGE = 20
INSTANCES_PAGE = 100
MANAGED_SETS = 2
# Short per-organization timings (EstateEmulator.Configure): the benchmark measures estate's
# calls and its own overhead, not the emulator's simulated AWS latency.
TIMINGS = {
    "CreateSeconds": 0.05,
    "CreatePolls": 1,
    "UnreachableSeconds": 0.05,
    "OperationSeconds": 0.05,
    "OperationPolls": 1,
}


def manifest(directory: Path, n: int, stack_set: bool = True) -> None:
    (directory / "templates").mkdir(parents=True)
    (directory / "templates/topic.yaml").write_text(
        "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n"
    )
    (directory / "estate.yaml").write_text(
        "apiVersion: estate/v1\nkind: Estate\nmetadata: {name: scale}\nspec:\n"
        "  homeRegion: us-east-1\n  regions: [us-east-1]\n  promotion: [workloads]\n"
        "  include: [organization.yaml" + (", stacksets.yaml" if stack_set else "") + "]\n"
    )
    lines = [
        "apiVersion: estate/v1",
        "kind: Organization",
        "metadata: {name: scale}",
        "spec:",
        "  units:",
        *[f"    - path: /u{u}" for u in range(UNITS)],
        "  accounts:",
        *[
            f"    - {{name: a{i}, email: scale-a{i}@example.com, unit: /u{i % UNITS}}}"
            for i in range(n)
        ],
        "---",
        "apiVersion: estate/v1",
        "kind: Environment",
        "metadata: {name: workloads}",
        "spec:",
        "  targets: {units: [" + ", ".join(f"/u{u}" for u in range(UNITS)) + "]}",
    ]
    (directory / "organization.yaml").write_text("\n".join(lines) + "\n")
    (directory / "stacksets.yaml").write_text(
        "apiVersion: estate/v1\nkind: StackSet\nmetadata: {name: baseline}\nspec:\n"
        "  template: templates/topic.yaml\n  environments: [workloads]\n"
        "  permissionModel: self-managed\n"
    )


def bootstrap(endpoint: str, account: str) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, str(REPO / "tests/emulator/bootstrap.py"), endpoint, account],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    env = {}
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return env


def configure(endpoint: str, account: str, timings: dict[str, float] | None = None) -> None:
    body = json.dumps({"ManagementAccount": account, **(timings or TIMINGS)}).encode()
    request = urllib.request.Request(
        endpoint + "/",
        data=body,
        headers={
            "X-Amz-Target": "EstateEmulator.Configure",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 200, answer.read()


def floor(n: int) -> dict[str, int]:
    """The fewest calls a no-op plan of this manifest can make, by operation."""
    per_unit = [len(range(u, n, UNITS)) for u in range(UNITS)]
    return {
        # Who is asking (the administration role's account, the partition).
        "STS.GetCallerIdentity": 1,
        "Organizations.DescribeOrganization": 1,
        "Organizations.ListRoots": 1,
        # The root and each unit: its child units, then its accounts (20 a page).
        "Organizations.ListOrganizationalUnitsForParent": 1 + UNITS,
        "Organizations.ListAccountsForParent": 1
        + sum(max(1, math.ceil(c / ACCOUNTS_PAGE)) for c in per_unit),
        # The root's tags: where an estate records its portfolio hubs.
        "Organizations.ListTagsForResource": 1,
        "CloudFormation.ListStackSets": 1,
        # Two managed stack sets: the manifest's, and estate's execution-role bootstrap (a
        # service-managed stack set in the N member accounts); N instances each.
        "CloudFormation.DescribeStackSet": MANAGED_SETS,
        "CloudFormation.ListStackInstances": MANAGED_SETS * math.ceil(n / INSTANCES_PAGE),
        # Prerequisite checks of a self-managed stack set: the execution-role bootstrap is a
        # service-managed stack set (trusted access), the administration role a stack.
        "CloudFormation.DescribeOrganizationsAccess": 1,
        "CloudFormation.DescribeStacks": 1,
    }


def run(estate: str, args: list[str], env: dict[str, str], want: int) -> tuple[float, str, str]:
    start = time.monotonic()
    done = subprocess.run([estate, *args], env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if done.returncode != want:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"estate {args[0]}: exit code {done.returncode}, expected {want}")
    return seconds, done.stdout, done.stderr


def bench(estate: str, endpoint: str, n: int, account: str) -> bool:
    print(f"\n== N = {n} accounts in {UNITS} units, 1 self-managed stack set, 1 region")
    env = environment(endpoint, account)
    configure(endpoint, account)
    with tempfile.TemporaryDirectory() as work:
        directory = Path(work) / "manifest"
        manifest(directory, n)
        seconds, _, err = run(estate, ["apply", str(directory), "--auto-approve", "--stats"], env, 0)
        calls = [l for l in err.splitlines() if l.startswith("AWS API calls")]
        print(f"apply (creates {n} accounts, {UNITS} units, roles, {n} instances): "
              f"{seconds:.1f} s wall clock; {calls[0] if calls else ''}")
        seconds, out, _ = run(
            estate, ["plan", str(directory), "--format", "json", "--stats"], env, 0
        )
    plan = json.loads(out)
    assert not plan.get("changes"), f"the plan after apply is not a no-op: {plan['changes']}"
    stats: dict[str, int] = plan["stats"]
    want = floor(n)
    print(f"no-op plan: {seconds:.2f} s wall clock, {sum(stats.values())} calls "
          f"(floor {sum(want.values())})")
    print(f"  {'operation':<50} {'calls':>6} {'floor':>6}")
    above = False
    for op in sorted(set(stats) | set(want)):
        got, least = stats.get(op, 0), want.get(op, 0)
        note = "  ABOVE FLOOR" if got > least else "  below floor (emulator pages?)" if got < least else ""
        above |= got > least
        print(f"  {op:<50} {got:>6} {least:>6}{note}")
    return not above


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
        AWS_MAX_ATTEMPTS=os.environ.get("AWS_MAX_ATTEMPTS", "1"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        ESTATE_POLL_MS=os.environ.get("ESTATE_POLL_MS", "100"),
        NO_COLOR="1",
    )
    env.update(bootstrap(endpoint, account))
    return env


# Account creation as AWS paces it, scaled down: each CreateAccount stays IN_PROGRESS for
# this long (AWS takes about a minute), so the comparison measures waiting, not estate's CPU.
CREATION_TIMINGS = {**TIMINGS, "CreateSeconds": 0.5, "CreatePolls": 1}


def creation(estate: str, endpoint: str, n: int, at_once: int, account: str) -> float:
    """Wall-clock seconds of an apply that creates N accounts (no stack set), `at_once` at a time."""
    env = environment(endpoint, account)
    configure(endpoint, account, CREATION_TIMINGS)
    with tempfile.TemporaryDirectory() as work:
        directory = Path(work) / "manifest"
        manifest(directory, n, stack_set=False)
        seconds, _, _ = run(
            estate,
            ["apply", str(directory), "--auto-approve", "--accounts-at-once", str(at_once)],
            env,
            0,
        )
    return seconds


def main() -> int:
    estate, endpoint, *sizes = sys.argv[1:]
    at_floor = True
    for k, n in enumerate(int(s) for s in sizes):
        # A fresh management account per N, as the tests isolate theirs.
        at_floor &= bench(estate, endpoint, n, f"2109876{k:05d}")
    # Concurrent against serial creation, at the first size (serial takes N × the creation time).
    n = int(sizes[0])
    print(f"\n== creating {n} accounts, each IN_PROGRESS for {CREATION_TIMINGS['CreateSeconds']} s")
    serial = creation(estate, endpoint, n, 1, "210987700001")
    print(f"one at a time (--accounts-at-once 1): {serial:.1f} s")
    concurrent = creation(estate, endpoint, n, 4, "210987700002")
    print(f"four at a time (the default):          {concurrent:.1f} s ({serial / concurrent:.1f}x faster)")
    return 0 if at_floor else 3


if __name__ == "__main__":
    sys.exit(main())
