"""Chaos: 200 targets, two forced rounds, every fault of the emulator at once.

Trust nothing from the wire (point 6). Against 503s, drops, slow and endless bodies,
expired, rogue-signed, unsigned, oversize, nested and garbage answers, a rotation must
end with every target holding a verified fresh token or the valid one it held before,
no torn or hostile file anywhere, and no run longer than its settings allow.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import stat
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import State

from usegrant_flows.api.claims import MINTED_FETCH_TIMEOUT
from usegrant_flows.api.retry import RetryPolicy, is_testing
from usegrant_flows.api.verify import verify_token
from usegrant_flows.credentials import UseGrantCredentials
from usegrant_flows.emulator import RunningEmulator
from usegrant_flows.emulator.faults import FAULT_NAMES
from usegrant_flows.rotation.rotate_flow import rotate_targets
from usegrant_flows.rotation.tasks import ARTIFACT_KEY

pytestmark = pytest.mark.usefixtures("prefect_harness")

CREDENTIALS = "chaos-emulator"
TARGETS = 200
CONCURRENCY = 50
#: Seconds one HTTP attempt may take (the credentials block's ``timeout``).
TIMEOUT = 2.0
CHAOS_SEED = 6_062_026
#: Every fault kind at once: 37 % of the token requests meet one.
FAULTS: dict[str, float] = {
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
#: Seconds a run may spend outside the mint calls: planning, sink reads and writes,
#: verification, task and artifact bookkeeping on the Prefect API.
MARGIN_S = 15.0
#: How much slower than the computed bound a loaded 2-core machine may be. The bound
#: assumes every target takes its worst case; a round measures about 10 s against it.
GENEROSITY = 3.0


def target_bound(policy: RetryPolicy, timeout: float, *, sleeps: bool) -> float:
    """Longest one target may take: its mint call, then one bounded JWKS fetch.

    No attempt starts past the retry deadline and none outlives it, so the deadline
    caps the sum of every attempt's timeout and the largest waits between them.
    """
    waits = sum(
        min(policy.max_backoff, policy.initial_backoff * 2 ** (n - 1))
        for n in range(1, policy.max_attempts)
    )
    mint = min(policy.deadline, policy.max_attempts * timeout + (waits if sleeps else 0.0))
    return mint + MINTED_FETCH_TIMEOUT


def run_bound(targets: int, concurrency: int, per_target: float) -> float:
    """Longest a run of ``targets`` may take, ``concurrency`` at once, each <= ``per_target``.

    Greedy scheduling on ``concurrency`` slots ends within the total work over the
    slots plus one target: ``(targets / concurrency + 1) * per_target``.
    """
    return (targets / concurrency + 1) * per_target + MARGIN_S


def fleet(emu: RunningEmulator, folder: Path) -> list[dict[str, Any]]:
    clients = [(p.id, c) for p in emu.seed.providers for c in p.clients]
    targets = []
    for i in range(TARGETS):
        provider_id, client = clients[i % len(clients)]
        targets.append(
            {
                "name": f"chaos-{i:03d}-{client.name}",
                "provider_id": str(provider_id),
                "client_id": str(client.id),
                "credentials": CREDENTIALS,
                "expires_in": 3600,
                "sinks": [{"type": "file", "path": str(folder / f"chaos-{i:03d}.jwt")}],
            }
        )
    return targets


def audiences(emu: RunningEmulator) -> dict[UUID, str]:
    return {c.id: c.audience for p in emu.seed.providers for c in p.clients}


def b64url_json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def whole_jwt(path: Path) -> str:
    """Return the file's JWT; fail unless it is one whole compact JWT, mode 0600."""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    text = path.read_bytes().decode("ascii")
    parts = text.split(".")
    assert len(parts) == 3 and all(parts), f"{path.name} is not a whole JWT"
    try:
        header, claims = b64url_json(parts[0]), b64url_json(parts[1])
        base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
    except (binascii.Error, ValueError) as exc:
        raise AssertionError(f"{path.name} is torn: {exc}") from None
    assert isinstance(header, dict) and isinstance(claims, dict), path.name
    return text


def fingerprint(jwt: str) -> str:
    return hashlib.sha256(jwt.encode()).hexdigest()[:12]


async def streams_closed(emu: RunningEmulator, within: float = 2.0) -> bool:
    """Tell whether every slow or endless body ends within ``within`` s of the run."""
    for _ in range(int(within / 0.1) + 1):
        if emu.stats()["active_streams"] == 0:
            return True
        await asyncio.sleep(0.1)
    return False


async def rotate(targets: list[dict[str, Any]]) -> tuple[State, dict[str, dict[str, str]], float]:
    """Run a forced rotation; return its state, its rows by target, its recorded seconds."""
    state: State = await rotate_targets(
        targets=targets, force=True, concurrency=CONCURRENCY, return_state=True
    )
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    [table] = [a for a in artifacts if a.key == ARTIFACT_KEY]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert isinstance(rows, list)
    by_target = {row["target"]: row for row in rows}
    assert len(by_target) == len(targets), "one row per target"
    return state, by_target, run.total_run_time.total_seconds()


def check_round(
    emu: RunningEmulator,
    targets: list[dict[str, Any]],
    rows: dict[str, dict[str, str]],
    before: dict[str, bytes],
) -> dict[str, bytes]:
    """Check every target's file against its row and what it held before; return the files."""
    aud = audiences(emu)
    after: dict[str, bytes] = {}
    for target in targets:
        name, path = target["name"], Path(target["sinks"][0]["path"])
        action = rows[name]["action"]
        old = before.get(name)
        if action == "minted":
            jwt = whole_jwt(path)
            verify_token(jwt, emu.jwks_url, audience=aud[UUID(target["client_id"])])
            assert rows[name]["fingerprint"] == fingerprint(jwt), f"{name}: not the reported token"
            assert jwt.encode() != old, f"{name}: minted yet unchanged"
        elif action == "failed_but_valid":
            assert old is not None, f"{name}: failed_but_valid with nothing held before"
            assert path.read_bytes() == old, f"{name}: its old token was not kept byte for byte"
            whole_jwt(path)
        else:
            assert action == "failed", f"{name}: {action} in a forced run"
            assert old is None, f"{name}: failed although it held a valid token"
            assert not path.exists(), f"{name}: a refused token was written"
        if path.exists():
            after[name] = path.read_bytes()
    leftovers = sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".jwt"))
    assert leftovers == [], f"temporary files left behind: {leftovers}"
    return after


@pytest.mark.timeout(150)
async def test_chaos_every_target_ends_verified_or_keeps_its_old_token_within_the_bound(
    emu: RunningEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    block = UseGrantCredentials(
        api_key=emu.api_key,  # type: ignore[arg-type]
        base_url=emu.base_url,
        timeout=TIMEOUT,
        max_requests_per_hour=100_000,
        jwks_url=emu.jwks_url,
    )
    await block.asave(CREDENTIALS, overwrite=True)
    targets = fleet(emu, tmp_path)
    per_target = target_bound(RetryPolicy(), TIMEOUT, sleeps=not is_testing())
    bound = GENEROSITY * run_bound(TARGETS, CONCURRENCY, per_target)

    held: dict[str, bytes] = {}
    injected: dict[str, int] = dict.fromkeys(FAULT_NAMES, 0)
    for round_no in (1, 2):
        emu.reset_stats()
        emu.set_faults(random_seed=CHAOS_SEED + round_no, **FAULTS)
        state, rows, seconds = await rotate(targets)
        emu.set_faults(**{k: 0 for k in FAULTS if k.endswith("_rate")})
        # The emulator would cut a forgotten stream after stream_limit_s (5 s), not sooner.
        assert await streams_closed(emu), f"round {round_no}: a stream outlived its run"
        stats = emu.stats()
        for kind, count in stats["faults_injected"].items():
            injected[kind] += count
        actions = [row["action"] for row in rows.values()]
        assert actions.count("minted") >= TARGETS // 2, f"round {round_no}: {state.message}"
        assert state.is_completed() == ("failed" not in actions)
        held = check_round(emu, targets, rows, held)
        assert seconds < bound, f"round {round_no} ran {seconds:.1f} s, bound {bound:.1f} s"
        if round_no == 2:
            assert "failed_but_valid" in actions, "round 2 kept no old token: faults missed"
    assert all(injected[kind] > 0 for kind in FAULT_NAMES), injected
    logged = caplog.text
    assert logged, "nothing was logged: the check below would prove nothing"
    assert "eyJ" not in logged, "a JWT was logged"
    assert emu.api_key not in logged, "the API key was logged"
