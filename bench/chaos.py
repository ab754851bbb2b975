"""Chaos benchmark: the chaos test's scenario, with its figures printed.

N targets (default 200) over the seed's three clients, each with its own token file,
(and a second copy of it) rotated in forced rounds (default 2) by the ``rotate-tokens``
flow on Prefect's embedded
API, against the emulator in a SEPARATE process with every fault at once: 503s, drops,
slow bodies (one byte every 200 ms, cut after 5 s), endless bodies, expired,
rogue-signed, unsigned, oversize, nested and garbage answers, at a fixed seed. Retry
waits are real (no test switch).

Printed per round: outcome counts, faults injected per kind, requests made, the wall
time and the flow run's recorded time, the bound computed from the settings and the
ratio of the wall time to it, and the check of every token file (verified, kept byte
for byte, torn, hostile). Then a repair round: the second copy of every 10th delivered
token is deleted and a plain (unforced) run without faults must repair them from the
first copy without a mint (counted as ``repaired``), mint only the targets that hold no
token, and find the rest fresh. Plus ``os.getloadavg()`` before and after. No token is
printed.

    .venv/bin/python bench/chaos.py
    .venv/bin/python bench/chaos.py --targets 400 --rounds 3 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from _emulator import start_emulator as start_process  # noqa: E402

#: The chaos test's faults: 37 % of the token requests meet one.
FAULT_FLAGS: dict[str, float] = {
    "fail_rate": 0.08,
    "fail_status": 503,
    "drop_rate": 0.05,
    "slow_body_rate": 0.03,
    "slow_body_interval_ms": 200,
    "endless_body_rate": 0.03,
    "expired_rate": 0.03,
    "bad_signature_rate": 0.03,
    "alg_none_rate": 0.03,
    "oversize_rate": 0.03,
    "nested_rate": 0.03,
    "garbage_rate": 0.03,
    "stream_limit_s": 5,
}
#: The outcomes printed, in order.
ACTIONS = ("minted", "repaired", "failed_but_valid", "failed", "fresh")
#: Seconds a run may spend outside the mint calls (as in the chaos test).
MARGIN_S = 15.0
CLIENTS = (("aws", "sts.amazonaws.com"), ("gcp", "gcp-audience"), ("azure", "api://azure"))


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def write_seed(path: Path) -> tuple[str, str, list[tuple[str, str]]]:
    """Write a seed of one provider and three clients; return key, provider, clients."""
    api_key = "usegrant_chaos_" + secrets.token_hex(16)
    provider_id = str(uuid.uuid4())
    clients = [(str(uuid.uuid4()), name, audience) for name, audience in CLIENTS]
    seed = {
        "api_keys": [api_key],
        "providers": [
            {
                "id": provider_id,
                "name": "chaos",
                "default_domain": "chaos.auth.usegrant.dev",
                "custom_domain": None,
                "clients": [
                    {"id": cid, "name": name, "audience": audience, "subject": f"s-{name}"}
                    for cid, name, audience in clients
                ],
            }
        ],
    }
    path.write_text(json.dumps(seed))
    path.chmod(0o600)
    return api_key, provider_id, [(cid, audience) for cid, _, audience in clients]


def start_emulator(seed: Path, random_seed: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start the emulator with the faults; wait until it answers."""
    flags = ["--random-seed", str(random_seed)]
    for name, value in FAULT_FLAGS.items():
        flags += [f"--{name.replace('_', '-')}", str(value)]
    return start_process(seed, log, *flags)


def target_bound(timeout: float) -> float:
    """Longest one target may take: its mint call (default RetryPolicy, real waits), then
    one bounded JWKS fetch."""
    from usegrant_flows.api.claims import MINTED_FETCH_TIMEOUT
    from usegrant_flows.api.retry import RetryPolicy

    policy = RetryPolicy()
    waits = sum(
        min(policy.max_backoff, policy.initial_backoff * 2 ** (n - 1))
        for n in range(1, policy.max_attempts)
    )
    mint = min(policy.deadline, policy.max_attempts * timeout + waits)
    return float(mint + MINTED_FETCH_TIMEOUT)


def run_bound(targets: int, concurrency: int, per_target: float) -> float:
    """``(targets / concurrency + 1) * per_target + margin``: greedy slots, each target bounded."""
    return (targets / concurrency + 1) * per_target + MARGIN_S


def whole_jwt(path: Path) -> str | None:
    """Return the file's JWT when it is one whole compact JWT of mode 0600, else ``None``."""
    try:
        if path.stat().st_mode & 0o777 != 0o600:
            return None
        text = path.read_bytes().decode("ascii")
        parts = text.split(".")
        if len(parts) != 3 or not all(parts):
            return None
        for part in parts[:2]:
            json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (OSError, ValueError):
        return None
    return text


def check_files(
    targets: list[dict[str, Any]],
    rows: dict[str, dict[str, str]],
    before: dict[str, bytes],
    jwks_url: str,
    audience: dict[str, str],
) -> tuple[Counter[str], dict[str, bytes]]:
    """Check every token file against its row; return the tallies and the files."""
    from usegrant_flows.api.errors import TokenVerificationError
    from usegrant_flows.api.verify import verify_token

    tally: Counter[str] = Counter()
    after: dict[str, bytes] = {}
    for target in targets:
        name, path = target["name"], Path(target["sinks"][0]["path"])
        action, old = rows[name]["action"], before.get(name)
        if not path.exists():
            tally["no file (failed)" if old is None else "LOST old token"] += 1
            continue
        jwt = whole_jwt(path)
        if jwt is None:
            tally["TORN"] += 1
            continue
        after[name] = jwt.encode()
        if action not in ("minted", "repaired"):
            tally["kept byte for byte" if after[name] == old else "CHANGED without a mint"] += 1
            continue
        try:
            verify_token(jwt, jwks_url, audience=audience[target["client_id"]])
        except TokenVerificationError:
            tally["HOSTILE written"] += 1
        else:
            tally["verified fresh"] += 1
    return tally, after


async def read_run(flow_run_id: Any) -> tuple[dict[str, dict[str, str]], float]:
    """Return the run's table rows by target and its recorded run time in seconds."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from usegrant_flows.rotation.tasks import ARTIFACT_KEY

    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    [table] = [a for a in artifacts if a.key == ARTIFACT_KEY]
    data: Any = table.data
    rows: list[dict[str, str]] = json.loads(data) if isinstance(data, str) else data
    return {row["target"]: row for row in rows}, run.total_run_time.total_seconds()


def repair_round(targets: list[dict[str, Any]], base_url: str, concurrency: int) -> None:
    """Delete the second copy of every 10th delivered token; a plain run must repair them."""
    from usegrant_flows.rotation.rotate_flow import rotate_tokens

    removed = 0
    for target in targets[::10]:
        first, copy = (Path(sink["path"]) for sink in target["sinks"])
        if first.exists() and copy.exists():
            copy.unlink()
            removed += 1
    no_faults = {name: 0 for name in FAULT_FLAGS if name.endswith("_rate")}
    httpx.post(f"{base_url}/_emulator/faults", json=no_faults, timeout=10).raise_for_status()
    httpx.post(f"{base_url}/_emulator/reset", timeout=10).raise_for_status()
    state = asyncio.run(
        rotate_tokens(targets=targets, concurrency=concurrency, return_state=True)  # type: ignore[arg-type]
    )
    rows, _ = asyncio.run(read_run(state.state_details.flow_run_id))
    outcomes = Counter(row["action"] for row in rows.values())
    stats = httpx.get(f"{base_url}/_emulator/stats", timeout=10).json()
    print(f"\nrepair round (no force, no faults): {removed} second copies deleted")
    print(
        "  outcomes: "
        + ", ".join(
            f"{outcomes[a]} {a}"
            for a in ("minted", "repaired", "failed_but_valid", "failed", "fresh")
        )
    )
    print(f"  requests: {stats['token_calls']['total']} token calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per HTTP attempt")
    parser.add_argument("--random-seed", type=int, default=6_062_026)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="usegrant-chaos-"))
    os.environ.update(
        PREFECT_HOME=str(work / "prefect-home"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PREFECT_LOGGING_LEVEL="CRITICAL",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
        os.environ.pop(name, None)
    import logging

    logging.getLogger("usegrant_flows").setLevel(logging.ERROR)  # one line per retry, else

    print(f"load average before: {loadavg()}  ({os.cpu_count()} cores)")
    api_key, provider_id, clients = write_seed(work / "seed.json")
    emulator, base_url = start_emulator(work / "seed.json", args.random_seed, work / "emu.log")
    try:
        from prefect.client.schemas.objects import State
        from pydantic import SecretStr

        from usegrant_flows.credentials import UseGrantCredentials
        from usegrant_flows.rotation.rotate_flow import rotate_targets

        started = time.perf_counter()
        UseGrantCredentials(
            api_key=SecretStr(api_key),
            base_url=base_url,
            timeout=args.timeout,
            max_requests_per_hour=100_000,
            jwks_url=f"{base_url}/.well-known/jwks",
        ).save("chaos", overwrite=True)
        print(f"Prefect embedded API up, credentials saved: {time.perf_counter() - started:.1f} s")
        targets = [
            {
                "name": f"chaos-{i:03d}",
                "provider_id": provider_id,
                "client_id": clients[i % len(clients)][0],
                "credentials": "chaos",
                "expires_in": 3600,
                "sinks": [
                    {"type": "file", "path": str(work / "tokens" / f"chaos-{i:03d}.jwt")},
                    {"type": "file", "path": str(work / "copies" / f"chaos-{i:03d}.jwt")},
                ],
            }
            for i in range(args.targets)
        ]
        audience = dict(clients)
        bound = run_bound(args.targets, args.concurrency, target_bound(args.timeout))
        print(
            f"targets {args.targets}, rounds {args.rounds}, concurrency {args.concurrency}, "
            f"attempt timeout {args.timeout:g} s, fault seed {args.random_seed}"
        )
        print(f"faults: {', '.join(f'{k}={v:g}' for k, v in FAULT_FLAGS.items())}")
        print(
            f"bound per round: ({args.targets}/{args.concurrency} + 1) x "
            f"{target_bound(args.timeout):g} s per target + {MARGIN_S:g} s = {bound:.1f} s"
        )
        held: dict[str, bytes] = {}
        for round_no in range(1, args.rounds + 1):
            httpx.post(
                f"{base_url}/_emulator/faults",
                json={"random_seed": args.random_seed + round_no},
                timeout=10,
            ).raise_for_status()
            httpx.post(f"{base_url}/_emulator/reset", timeout=10).raise_for_status()
            t0 = time.perf_counter()
            state: State[Any] = asyncio.run(
                rotate_targets(  # type: ignore[arg-type]
                    targets=targets, force=True, concurrency=args.concurrency, return_state=True
                )
            )
            wall = time.perf_counter() - t0
            rows, recorded = asyncio.run(read_run(state.state_details.flow_run_id))
            stats = httpx.get(f"{base_url}/_emulator/stats", timeout=10).json()
            tally, held = check_files(targets, rows, held, f"{base_url}/.well-known/jwks", audience)
            outcomes = Counter(row["action"] for row in rows.values())
            print(f"\nround {round_no} (force): state {state.type.value}")
            print("  outcomes: " + ", ".join(f"{outcomes[a]} {a}" for a in ACTIONS))
            print(f"  files: {', '.join(f'{n} {k}' for k, n in sorted(tally.items()))}")
            faults = stats["faults_injected"]
            print(
                f"  faults injected: {sum(faults.values())} "
                f"({', '.join(f'{k} {n}' for k, n in faults.items())})"
            )
            print(
                f"  requests: {stats['token_calls']['total']} token calls "
                f"({stats['tokens_issued']} sound tokens issued), {stats['total']} in all"
            )
            print(
                f"  wall {wall:.1f} s, flow run recorded {recorded:.1f} s, "
                f"wall / bound = {wall / bound:.3f}"
            )
            print(f"  load average: {loadavg()}")
        repair_round(targets, base_url, args.concurrency)
    finally:
        emulator.terminate()
        try:
            emulator.wait(10)
        except subprocess.TimeoutExpired:
            emulator.kill()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average after: {loadavg()}")


if __name__ == "__main__":
    main()
