"""The delivery record in a real Prefect server: a batch at a time, never a token.

Against the session's Prefect test server (``prefect_harness``): a batch's entries are
written in one call per chunk of 70 targets and read back by a new process's record in
one call; a batch whose entries did not change writes nothing.
"""

from __future__ import annotations

import pytest

from usegrant_flows.rotation.record import (
    CHUNK,
    RECORD_PREFIX,
    DeliveryEntry,
    PrefectRecord,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")


def identities(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}:p:c" for i in range(n)]


async def test_a_batch_of_250_is_read_in_one_call_and_written_in_four() -> None:
    batch = identities("record-a-", 250)
    writer = PrefectRecord()
    assert await writer.get(batch[0]) is None  # one read, nothing there yet
    for i, identity in enumerate(batch):
        writer.note(identity, DeliveryEntry(f"{i:012x}", 100, 3700 + i, 200, 1))
    await writer.flush(batch)
    assert writer.calls == 1 + -(-250 // CHUNK)  # the read, then one write per chunk

    reader = PrefectRecord()  # another worker, another run
    entries = [await reader.get(identity) for identity in batch]
    assert reader.calls == 1
    assert [e.expires_at if e else None for e in entries] == [3700 + i for i in range(250)]


async def test_an_unchanged_batch_writes_nothing() -> None:
    batch = identities("record-b-", 10)
    first = PrefectRecord()
    for identity in batch:
        first.note(identity, DeliveryEntry("0123456789ab", 1, 2, 3, 1))
    await first.flush(batch)
    again = PrefectRecord()
    for identity in batch:
        assert await again.get(identity) is not None
    before = again.calls
    await again.flush(batch)
    assert again.calls == before


async def test_the_newest_delivery_wins_when_two_variables_name_one_target() -> None:
    identity = "record-c-0:p:c"
    old, new = PrefectRecord(), PrefectRecord()
    old.note(identity, DeliveryEntry("000000000old", 1, 2, 100, 1))
    await old.flush([identity, "record-c-other:p:c"])  # another chunk, another variable
    new.note(identity, DeliveryEntry("000000000new", 1, 2, 200, 1))
    await new.flush([identity])
    entry = await PrefectRecord().get(identity)
    assert entry is not None and entry.fingerprint == "000000000new"


async def test_record_variables_hold_fingerprints_and_times_only() -> None:
    from prefect.client.orchestration import get_client

    batch = identities("record-d-", 3)
    record = PrefectRecord()
    for identity in batch:
        record.note(identity, DeliveryEntry("feedfacecafe", 10, 20, 30, 3))
    await record.flush(batch)
    async with get_client() as client:
        variables = await client.read_variables()
    values = [str(v.value) for v in variables if v.name.startswith(RECORD_PREFIX)]
    assert any("feedfacecafe,10,20,30,3" in value for value in values)
    assert all(len(value) <= 5000 for value in values)


class DownClient:
    """A Prefect client whose server does not answer."""

    async def __aenter__(self) -> DownClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def request(self, *args: object, **kwargs: object) -> None:
        raise ConnectionError("the Prefect server is down")


async def test_an_unreadable_record_is_no_record_and_is_not_written() -> None:
    record = PrefectRecord(client_factory=DownClient)
    assert await record.get("record-e-0:p:c") is None
    record.note("record-e-0:p:c", DeliveryEntry("0123456789ab", 1, 2, 3, 1))
    await record.flush(["record-e-0:p:c"])  # nothing written, nothing raised
    assert record.unreadable and record.calls == 1  # the one read that failed


async def test_a_record_read_before_a_grant_is_read_again_keeping_what_this_run_noted() -> None:
    import time

    theirs, mine = "record-e-theirs:p:c", "record-e-mine:p:c"
    run = PrefectRecord()
    assert await run.get(theirs) is None  # read at the start of the run
    run.note(mine, DeliveryEntry("00000000mine", 1, 2, 300, 1))  # noted, not yet written
    other = PrefectRecord()  # another run delivers `theirs`, records it, lets it go
    other.note(theirs, DeliveryEntry("0000000other", 1, 2, 400, 1))
    await other.flush([theirs])
    granted = time.monotonic()  # then this run is granted it

    await run.refresh(granted)
    calls = run.calls
    await run.refresh(granted)  # the read that began after the grant serves every target

    entry = await run.get(theirs)
    assert entry is not None and entry.fingerprint == "0000000other"
    kept = await run.get(mine)
    assert kept is not None and kept.fingerprint == "00000000mine"
    assert run.calls == calls == 2
