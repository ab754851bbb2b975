"""FileTokenSink survives SIGKILL in the middle of a write: the file is always a whole token.

A forked child rewrites the token file in a loop through :class:`FileTokenSink`, cycling
through five tokens of different lengths (a torn or mixed file could equal none of them).
Around each write it reports on a pipe: ``B`` when a write begins, ``D`` when it is
done. In the child only, ``os.replace`` first sleeps a few milliseconds, so a write spends
most of its time between "temporary file complete" and "renamed": the window a crash
must not damage.

The parent waits until the child has begun a write, kills it with SIGKILL after a
varied delay, and reads what the child reported. A kill *landed mid-write* when the
last report is ``B``. After each kill the file must exist, be exactly the token before
that write or the one it was writing (the latter only, when the kill came between
writes), and have mode 0600. The test fails unless most kills landed mid-write before
the rename (the file then still holds the old token), so it cannot pass by killing only
idle writers or finished writes.
"""

from __future__ import annotations

import os
import random
import select
import signal
import stat
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from usegrant_flows.api.models import AccessToken
from usegrant_flows.sinks import FileTokenSink

KILLS = 200
#: Seconds the child's os.replace waits before renaming: the mid-write window.
RENAME_DELAY = 0.004
#: Most seconds the parent waits for the child to report; a silent child fails the test.
REPORT_TIMEOUT = 10.0
MakeToken = Callable[..., AccessToken]


def _writer(sink: FileTokenSink, tokens: list[bytes], start: int, report: int) -> None:
    """Child process body: write tokens[start], tokens[start + 1], ... until killed."""
    try:
        real_replace = os.replace

        def slow_replace(src: str | Path, dst: str | Path) -> None:
            time.sleep(RENAME_DELAY)  # temporary file written and fsynced, not renamed yet
            real_replace(src, dst)

        os.replace = slow_replace  # type: ignore[assignment]  # this child process only
        i = 0
        while True:
            raw = tokens[(start + i) % len(tokens)].decode()
            token = AccessToken.model_validate(
                {"accessToken": raw, "expiresAt": "2099-01-01T00:00:00.000Z"}
            )
            os.write(report, b"B")
            sink.write(token)
            os.write(report, b"D")
            i += 1
    finally:
        os._exit(1)


def _wait_for_begin(reports: int, wanted: int) -> bytes:
    """Read reports until ``wanted`` writes have begun; fail if the child goes silent."""
    seen = b""
    deadline = time.monotonic() + REPORT_TIMEOUT
    while seen.count(b"B") < wanted:
        ready, _, _ = select.select([reports], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, "the writer child reported nothing"
        chunk = os.read(reports, 64)
        assert chunk, "the writer child closed its pipe"
        seen += chunk
    return seen


def _drain(reports: int) -> bytes:
    """Read what is left on the pipe of a dead child."""
    os.set_blocking(reports, False)
    rest = b""
    while True:
        try:
            chunk = os.read(reports, 4096)
        except BlockingIOError:
            return rest
        if not chunk:
            return rest
        rest += chunk


def test_a_writer_killed_mid_write_leaves_the_old_or_the_new_whole_token(
    tmp_path: Path, make_token: MakeToken
) -> None:
    tokens = [
        make_token(sub="s" * n).access_token.get_secret_value().encode()
        for n in (1, 40, 90, 7, 300)
    ]
    assert len(set(map(len, tokens))) == len(tokens)
    target = tmp_path / "tokens" / "t.jwt"
    sink = FileTokenSink(path=target)
    sink.write(
        AccessToken.model_validate(
            {"accessToken": tokens[0].decode(), "expiresAt": "2099-01-01T00:00:00.000Z"}
        )
    )
    rng = random.Random(20240601)
    outcomes: Counter[str] = Counter()

    for _ in range(KILLS):
        held = target.read_bytes()
        start = (tokens.index(held) + 1) % len(tokens)  # the child writes a new token first
        reports, report = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(reports)
            _writer(sink, tokens, start, report)
        os.close(report)
        try:
            seen = _wait_for_begin(reports, rng.randint(1, 3))
            time.sleep(rng.uniform(0.0, 0.005))  # varied kill points inside and after a write
        finally:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        seen += _drain(reports)
        os.close(reports)
        assert os.WIFSIGNALED(status), "the writer should have been killed mid-loop"

        writes = seen.count(b"B")
        new = tokens[(start + writes - 1) % len(tokens)]
        old = tokens[(start + writes - 2) % len(tokens)] if writes > 1 else held
        content = target.read_bytes()  # never missing: FileNotFoundError fails the test
        mid_write = seen.endswith(b"B")
        if mid_write:
            assert content in (old, new), f"torn or stale file of {len(content)} bytes"
            outcomes["mid-write, old kept" if content == old else "mid-write, new in place"] += 1
        else:
            assert content == new, f"a finished write is not in place ({len(content)} bytes)"
            outcomes["between writes"] += 1
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        for leftover in target.parent.glob(".t.jwt.*.tmp"):
            assert stat.S_IMODE(leftover.stat().st_mode) & ~0o600 == 0

    print(f"\n{KILLS} kills: {dict(outcomes)}")
    # Most kills must land inside a write, before its rename: the moment a torn or
    # missing file would appear if the sink were not atomic. Otherwise this test proved
    # nothing (idle writers, or kills that always came after the rename).
    before_rename = outcomes["mid-write, old kept"]
    assert before_rename > KILLS // 2, (
        f"only {before_rename} of {KILLS} kills landed mid-write before the rename: {outcomes}"
    )
