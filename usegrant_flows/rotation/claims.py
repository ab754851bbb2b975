"""Claims: which run holds which targets, as small records in the Prefect server's database.

A claim is a Prefect variable named ``usegrant-claim-<random>`` (tag ``usegrant-claim``)
whose value lists the targets a run holds, as 12-hex-digit keys (the start of the
SHA-256 of each target's identity), with the claim's TTL and who holds it:
``{"ttl": 60, "holder": "flow-run <id>", "keys": "<key><key>..."}``. A variable's value
is at most 5,000 characters, so one claim holds at most :data:`MAX_CLAIM_TARGETS`
targets; a bigger batch writes several.

Why records and not one global concurrency limit per target: a limit per target piles
up in the UI (one row per target, forever), costs a creation on the first sight of each
target (two runs meeting there make the server log a 409 with tracebacks), and an
increment of many limits is all or nothing, so one busy target refuses the whole batch.
And a slot whose lease lived in the server's memory is never freed after a restart.
Claims live in the database: they survive a restart, a claim nobody renews is stale
after its TTL (by the server's clock), and they are deleted when the run is done.

The rule that keeps two runs apart (write, then read): a run first writes its claim,
then reads every claim; a target that another live claim also lists is dropped from its
own (both runs may drop it; each asks again later). Of two runs claiming one target, the
later reader sees the other's committed claim, so at most one keeps it. This module has
the record operations; :mod:`usegrant_flows.rotation.lease` applies the rule.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import socket
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError, ObjectNotFound
from prefect.logging import get_logger, get_run_logger

__all__ = [
    "CLAIM_PREFIX",
    "CLAIM_TAG",
    "MAX_CLAIM_TARGETS",
    "Claim",
    "SeenClaim",
    "backoff",
    "chunks",
    "create_claim",
    "delete_claim",
    "holder_name",
    "lease_logger",
    "live_keys",
    "read_claims",
    "rewrite_claim",
    "server_trouble",
    "target_key",
]

#: Prefix of the claim variables' names.
CLAIM_PREFIX = "usegrant-claim-"
#: Tag of the claim variables (filter the Variables page by it).
CLAIM_TAG = "usegrant-claim"
#: Targets one claim lists at most (a variable holds 5,000 characters; a key takes 12).
MAX_CLAIM_TARGETS = 350
#: Claims read per page.
PAGE = 200
_KEY_CHARS = 12


def target_key(identity: str) -> str:
    """Return the 12-hex-digit key of a target identity (name, provider, client).

    Example:
        >>> key = target_key("aws:p:c")
        >>> len(key), key == target_key("aws:p:c"), key == target_key("aws:p:d")
        (12, True, False)
    """
    return hashlib.sha256(identity.encode()).hexdigest()[:_KEY_CHARS]


def chunks(keys: Iterable[str], size: int = MAX_CLAIM_TARGETS) -> Iterator[set[str]]:
    """Cut ``keys`` into sets of at most ``size`` (one claim each).

    Example:
        >>> [len(c) for c in chunks((str(i) for i in range(800)), 350)]
        [350, 350, 100]
    """
    current: set[str] = set()
    for key in keys:
        current.add(key)
        if len(current) == size:
            yield current
            current = set()
    if current:
        yield current


@dataclass
class Claim:
    """One of this run's claims.

    Attributes:
        name: The variable's name.
        keys: The keys it should list now (shrinks as targets are released).
        written: The keys the server holds (as last written).
        written_at: ``time.monotonic()`` of the last successful write, in seconds.
        confirmed_at: ``time.monotonic()`` when the read that granted its keys returned:
            whatever an earlier holder of those keys recorded before letting them go
            is visible to a read started after it.
    """

    name: str
    keys: set[str]
    written: frozenset[str] = field(default_factory=frozenset)
    written_at: float = 0.0
    confirmed_at: float = 0.0

    @classmethod
    def new(cls, keys: set[str]) -> Claim:
        """A claim with a fresh random name (never written yet)."""
        return cls(name=CLAIM_PREFIX + uuid.uuid4().hex, keys=set(keys))


@dataclass(frozen=True)
class SeenClaim:
    """A claim as read from the server.

    Attributes:
        name: The variable's name.
        keys: The keys it lists.
        stale: Not written for longer than its TTL (by the server's clock): its holder
            is gone, and its targets are free.
    """

    name: str
    keys: frozenset[str]
    stale: bool


def _value(keys: Iterable[str], ttl: float, holder: str) -> dict[str, Any]:
    return {"ttl": ttl, "holder": holder, "keys": "".join(sorted(keys))}


async def create_claim(
    client: PrefectClient, claim: Claim, *, ttl: float, holder: str, now: float
) -> None:
    """Write a new claim (one API call); ``now`` is ``time.monotonic()`` before the call."""
    await client.create_variable(
        VariableCreate(name=claim.name, value=_value(claim.keys, ttl, holder), tags=[CLAIM_TAG])
    )
    claim.written, claim.written_at = frozenset(claim.keys), now


async def rewrite_claim(
    client: PrefectClient, claim: Claim, *, ttl: float, holder: str, now: float
) -> bool:
    """Write a claim's keys again (one API call): shrinks it and renews its TTL.

    Returns:
        False when the claim is gone from the server (deleted as stale by another run).
    """
    keys = frozenset(claim.keys)
    try:
        await client.update_variable(
            VariableUpdate(name=claim.name, value=_value(keys, ttl, holder))
        )
    except ObjectNotFound:
        return False
    except Exception as exc:
        if getattr(getattr(exc, "response", None), "status_code", None) == 404:
            return False
        raise
    claim.written, claim.written_at = keys, now
    return True


async def delete_claim(client: PrefectClient, name: str) -> None:
    """Delete a claim (one API call); one already gone is fine."""
    with contextlib.suppress(ObjectNotFound):
        await client.delete_variable_by_name(name)


async def read_claims(client: PrefectClient) -> list[SeenClaim]:
    """Read every claim (one API call per 200 claims), judging staleness by the server.

    A claim is stale when the server's clock (its ``Date`` header) is more than the
    claim's TTL past the claim's last write.
    """
    seen: list[SeenClaim] = []
    offset = 0
    while True:
        response = await client.request(
            "POST",
            "/variables/filter",
            json={
                "variables": {"name": {"like_": CLAIM_PREFIX}, "tags": {"all_": [CLAIM_TAG]}},
                "limit": PAGE,
                "offset": offset,
            },
        )
        server_now = _server_time(response.headers.get("date"))
        page: list[dict[str, Any]] = response.json()
        for variable in page:
            claim = _parse(variable, server_now)
            if claim is not None:
                seen.append(claim)
        if len(page) < PAGE:
            return seen
        offset += PAGE


def _parse(variable: dict[str, Any], server_now: datetime) -> SeenClaim | None:
    name = str(variable.get("name", ""))
    value = variable.get("value")
    if isinstance(value, str):  # older servers hand JSON values back as text
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not name.startswith(CLAIM_PREFIX) or not isinstance(value, dict):
        return None
    raw = str(value.get("keys", ""))
    keys = frozenset(raw[i : i + _KEY_CHARS] for i in range(0, len(raw), _KEY_CHARS))
    try:
        ttl = float(value.get("ttl", 60))
        updated = datetime.fromisoformat(str(variable["updated"]).replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError):
        return SeenClaim(name, keys, stale=False)
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=timezone.utc)
    return SeenClaim(name, keys, stale=(server_now - updated).total_seconds() > ttl)


def _server_time(date: str | None) -> datetime:
    """The server's clock from its ``Date`` header (1 s resolution); ours without one."""
    if date:
        try:
            return parsedate_to_datetime(date)
        except (TypeError, ValueError):
            pass
    return datetime.now(timezone.utc)


def live_keys(seen: list[SeenClaim], ours: set[str]) -> set[str]:
    """Return the keys that other runs' live claims list (``ours``: our claims' names)."""
    keys: set[str] = set()
    for claim in seen:
        if not claim.stale and claim.name not in ours:
            keys |= claim.keys
    return keys


def holder_name() -> str:
    """Who holds a claim, for people reading the Variables page."""
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None:
        return f"flow run {context.flow_run.id}"
    return f"pid {os.getpid()} on {socket.gethostname()}"


def server_trouble(exc: Exception) -> str:
    """Why the server did not answer a claim call, in a few words."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"Prefect server answered {exc.response.status_code}"
    if isinstance(exc, (httpx.TransportError, OSError)):
        return f"Prefect server unreachable ({type(exc).__name__})"
    return f"claims unreadable ({type(exc).__name__})"


def lease_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run's logger, or the module's outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:  # outside a flow or task run
        return get_logger("usegrant_flows.lease")


def backoff(attempt: int, longest: float) -> float:
    """Seconds before asking a busy server again: 0.2, 0.4, 0.8 ... up to ``longest``, jittered."""
    cap: float = min(longest, 0.2 * 2.0 ** (attempt - 1))
    return cap * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not secrecy
