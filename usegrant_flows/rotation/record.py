"""The delivery record: what each target was last given, kept in the Prefect server.

A sink can say what it holds, but not whether that is what *we* delivered, and a
write-only sink (a webhook) says nothing at all. So every delivery is recorded, per
target: the token's fingerprint, its ``iat`` and ``exp``, which of the target's sinks got
it and when. Never the token. The runner (:mod:`usegrant_flows.rotation.verdict`) judges a
target against it: fresh only when every readable sink holds the recorded token; a
webhook-only target is fresh while its recorded delivery is.

**Where.** With a Prefect server (``PREFECT_API_URL`` set), the record is a set of
Prefect variables named ``usegrant-record-<12 hex>`` and tagged ``usegrant-record``, so it
outlives any worker and every worker sees the same one. A variable holds at most 5,000
characters, so each holds the entries of at most :data:`CHUNK` targets; a batch's
targets (sorted by key) are cut into chunks, and a chunk's variable is named after its
targets' keys, so a fleet that does not change rewrites the same variables run after
run. The record is **read and written a batch at a time**: one paginated read per run
(200 variables, about 14,000 targets, per call), and one write per chunk whose entries
changed when a batch ends (a batch where everything stayed fresh writes nothing). When
two variables hold one target (the fleet was re-cut), the newest delivery wins.

Without a Prefect server (plain Python, one process) the record lives in the process's
memory (:class:`MemoryRecord`): the runs of that process share it, a new process starts
without one (readable sinks are then judged by the token's issuer and signature, and
write-only targets are delivered again on their first run).

Two runs writing one chunk at the same moment can lose one's entries (the server has no
compare-and-swap on variables): the cost is one extra mint or repair for those targets,
never a wrong ``fresh`` (a lost entry is *no* record, and an older entry names a token the
sinks no longer hold).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from usegrant_flows.rotation.claims import target_key

__all__ = [
    "CHUNK",
    "RECORD_PREFIX",
    "RECORD_TAG",
    "DeliveryEntry",
    "DeliveryRecord",
    "MemoryRecord",
    "PrefectRecord",
    "decode",
    "encode",
]

#: Prefix of the record variables' names.
RECORD_PREFIX = "usegrant-record-"
#: Tag of the record variables (filter the Variables page by it).
RECORD_TAG = "usegrant-record"
#: Targets per record variable at most (an entry takes about 64 of its 5,000 characters).
CHUNK = 70
_PAGE = 200


@dataclass(frozen=True)
class DeliveryEntry:
    """One target's last delivery. Never holds a token.

    Attributes:
        fingerprint: The delivered token's fingerprint (12 hex digits).
        issued_at: Its ``iat`` (Unix seconds), 0 when it had none.
        expires_at: Its expiry (Unix seconds).
        at: When it was delivered (Unix seconds).
        sinks: Bit ``i`` set: the target's ``i``-th sink holds it (written or repaired).
    """

    fingerprint: str
    issued_at: int
    expires_at: int
    at: int
    sinks: int

    def expiry(self) -> datetime:
        """The expiry as an aware UTC datetime."""
        return datetime.fromtimestamp(self.expires_at, tz=timezone.utc)

    def issued(self) -> datetime | None:
        """The issue time as an aware UTC datetime, ``None`` when unknown."""
        return datetime.fromtimestamp(self.issued_at, tz=timezone.utc) if self.issued_at else None

    def holds(self, index: int) -> bool:
        """True when the target's ``index``-th sink got this token."""
        return bool(self.sinks >> index & 1)


def encode(entries: Mapping[str, DeliveryEntry]) -> str:
    """Encode entries by target key, compactly: ``key,fp,iat,exp,at,mask`` joined by ``;``.

    Example:
        >>> e = DeliveryEntry("0123456789ab", 100, 3700, 110, 3)
        >>> encode({"a1b2c3d4e5f6": e})
        'a1b2c3d4e5f6,0123456789ab,100,3700,110,3'
        >>> decode(encode({"a1b2c3d4e5f6": e})) == {"a1b2c3d4e5f6": e}
        True
    """
    return ";".join(
        f"{key},{e.fingerprint},{e.issued_at},{e.expires_at},{e.at},{e.sinks}"
        for key, e in sorted(entries.items())
    )


def decode(text: str) -> dict[str, DeliveryEntry]:
    """Decode :func:`encode`'s text; a malformed entry is skipped (as no record)."""
    entries: dict[str, DeliveryEntry] = {}
    for item in text.split(";"):
        parts = item.split(",")
        if len(parts) != 6:
            continue
        try:
            entries[parts[0]] = DeliveryEntry(
                parts[1], int(parts[2]), int(parts[3]), int(parts[4]), int(parts[5])
            )
        except ValueError:
            continue
    return entries


class DeliveryRecord(Protocol):
    """Where deliveries are recorded (:class:`PrefectRecord` or :class:`MemoryRecord`)."""

    async def get(self, identity: str) -> DeliveryEntry | None:
        """Return the target's last delivery; the first call of a run loads the record."""

    def note(self, identity: str, entry: DeliveryEntry) -> None:
        """Remember a delivery, to be written by :meth:`flush`."""

    async def flush(self, identities: Iterable[str]) -> None:
        """Write what changed for these targets (a batch's), one call per changed chunk."""

    async def refresh(self, since: float) -> None:
        """Read the record again unless a read started at ``since`` or later."""


class MemoryRecord:
    """The record of one process (no Prefect server): a dictionary, shared by its runs.

    Args:
        entries: The dictionary to keep entries in; default the process's own.
    """

    _PROCESS: dict[str, DeliveryEntry] = {}  # noqa: RUF012 (shared on purpose)

    def __init__(self, entries: dict[str, DeliveryEntry] | None = None) -> None:
        self.entries = self._PROCESS if entries is None else entries

    async def get(self, identity: str) -> DeliveryEntry | None:
        """Return the target's last delivery, or ``None``."""
        return self.entries.get(target_key(identity))

    def note(self, identity: str, entry: DeliveryEntry) -> None:
        """Record a delivery at once."""
        self.entries[target_key(identity)] = entry

    async def flush(self, identities: Iterable[str]) -> None:
        """Nothing to write: :meth:`note` did."""

    async def refresh(self, since: float) -> None:
        """Nothing to read: the dictionary is the record."""


class PrefectRecord:
    """The record in a Prefect server's variables (see the module docstring).

    Args:
        client_factory: Returns an async Prefect client context manager; default
            :func:`prefect.client.orchestration.get_client`.
    """

    def __init__(self, client_factory: Any = None) -> None:
        if client_factory is None:
            from prefect.client.orchestration import get_client

            client_factory = get_client
        self._client_factory = client_factory
        self._entries: dict[str, DeliveryEntry] | None = None
        self._names: set[str] = set()  # record variables that exist on the server
        self._written: dict[str, str] = {}  # chunk name -> value as last read or written
        self._load_lock = asyncio.Lock()  # binds to the run's loop on first use
        self._loaded_at: float | None = None  # time.monotonic() when the last read began
        #: Prefect API calls made (reads and writes), for tests and the bench.
        self.calls = 0
        #: True when this run could not read the record: it is then not written either,
        #: so the entries of targets this run did not deliver are not lost.
        self.unreadable = False

    async def _load(self) -> dict[str, DeliveryEntry]:
        if self._entries is not None:
            return self._entries
        async with self._load_lock:
            if self._entries is None:
                started = time.monotonic()
                try:
                    self._entries = await self._read_all()
                    self._loaded_at = started
                except Exception as exc:  # the server is down: judge without a record
                    logging.getLogger(__name__).warning(
                        "the delivery record could not be read (%s): this run judges "
                        "targets without it and will not write it",
                        type(exc).__name__,
                    )
                    self.unreadable = True
                    self._entries = {}
            return self._entries

    async def _read_all(self) -> dict[str, DeliveryEntry]:
        newest: dict[str, DeliveryEntry] = {}
        offset = 0
        async with self._client_factory() as client:
            while True:
                self.calls += 1
                response = await client.request(
                    "POST",
                    "/variables/filter",
                    json={
                        "variables": {
                            "name": {"like_": RECORD_PREFIX},
                            "tags": {"all_": [RECORD_TAG]},
                        },
                        "limit": _PAGE,
                        "offset": offset,
                    },
                )
                page: list[dict[str, Any]] = response.json()
                for variable in page:
                    name, value = str(variable.get("name", "")), variable.get("value")
                    if isinstance(value, str):  # older servers hand JSON values back as text
                        try:
                            value = json.loads(value)
                        except ValueError:
                            value = None
                    if not name.startswith(RECORD_PREFIX) or not isinstance(value, dict):
                        continue
                    text = str(value.get("entries", ""))
                    self._names.add(name)
                    self._written[name] = text
                    for key, entry in decode(text).items():
                        known = newest.get(key)
                        if known is None or entry.at >= known.at:
                            newest[key] = entry
                if len(page) < _PAGE:
                    return newest
                offset += _PAGE

    async def get(self, identity: str) -> DeliveryEntry | None:
        """Return the target's last delivery; the run's first call reads the record."""
        return (await self._load()).get(target_key(identity))

    async def refresh(self, since: float) -> None:
        """Read the record again unless a read started at ``since`` or later.

        A run that is granted a target another run held calls this before judging it:
        that run recorded its delivery before letting the target go, and a record read
        before the grant would not name the token the sinks now hold (one needless
        mint). Reads are shared: the targets granted together cost one read. What this
        run noted and has not written yet is kept (the newest delivery wins). A read
        that fails keeps the record as it was.

        Args:
            since: ``time.monotonic()`` seconds, e.g. :meth:`TargetLeases.granted_at`.
        """
        if self._loaded_at is not None and self._loaded_at >= since:
            return
        async with self._load_lock:
            if self.unreadable or (self._loaded_at is not None and self._loaded_at >= since):
                return
            started = time.monotonic()
            try:
                fresh = await self._read_all()
            except Exception as exc:
                logging.getLogger(__name__).warning(
                    "the delivery record could not be read again (%s)", type(exc).__name__
                )
                return
            entries = self._entries if self._entries is not None else {}
            for key, entry in fresh.items():
                known = entries.get(key)
                if known is None or entry.at >= known.at:
                    entries[key] = entry
            self._entries, self._loaded_at = entries, started

    def note(self, identity: str, entry: DeliveryEntry) -> None:
        """Remember a delivery; :meth:`flush` writes it with its batch."""
        if self._entries is None:
            self._entries = {}
        self._entries[target_key(identity)] = entry

    async def flush(self, identities: Iterable[str]) -> None:
        """Write the chunks of these targets whose entries changed: one call per chunk.

        Raises:
            Exception: What the Prefect client raised; the caller logs it (a record not
                written costs at most one more mint or repair next run).
        """
        entries = await self._load()
        if self.unreadable:
            return
        keys = sorted({target_key(identity) for identity in identities})
        from prefect.client.schemas.actions import VariableCreate, VariableUpdate
        from prefect.exceptions import ObjectAlreadyExists

        async with self._client_factory() as client:
            for start in range(0, len(keys), CHUNK):
                chunk = keys[start : start + CHUNK]
                name = RECORD_PREFIX + hashlib.sha256("".join(chunk).encode()).hexdigest()[:12]
                text = encode({key: entries[key] for key in chunk if key in entries})
                if not text or self._written.get(name) == text:
                    continue
                value = {"entries": text}
                self.calls += 1
                if name in self._names:
                    await client.update_variable(VariableUpdate(name=name, value=value))
                else:
                    try:
                        await client.create_variable(
                            VariableCreate(name=name, value=value, tags=[RECORD_TAG])
                        )
                    except ObjectAlreadyExists:  # another run created it meanwhile
                        self.calls += 1
                        await client.update_variable(VariableUpdate(name=name, value=value))
                    self._names.add(name)
                self._written[name] = text
