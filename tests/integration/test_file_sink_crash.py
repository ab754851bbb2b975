"""FileTokenSink survives SIGKILL at any moment: the file is always a whole token.

A forked child rewrites the token file in a loop, alternating two tokens of different
lengths (a truncated or mixed file could not equal either), and the parent kills it
with SIGKILL after a random delay of a few milliseconds, a few hundred times. After
each kill the file must be absent or exactly one of the two tokens, with mode 0600;
leftover temporary files of killed writers must be no wider than 0600 either.
"""

from __future__ import annotations

import os
import random
import signal
import stat
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from usegrant_flows.api.models import AccessToken
from usegrant_flows.sinks import FileTokenSink

KILLS = 300
MakeToken = Callable[..., AccessToken]


def _writer_loop(sink: FileTokenSink, tokens: list[AccessToken]) -> None:
    """Child process body: rewrite the file forever, never returning."""
    try:
        i = 0
        while True:
            sink.write(tokens[i % 2])
            i += 1
    finally:
        os._exit(1)


def test_a_killed_writer_never_leaves_a_partial_or_wider_file(
    tmp_path: Path, make_token: MakeToken
) -> None:
    tokens = [make_token(sub="a"), make_token(sub="b" * 300)]
    valid = {
        t.access_token.get_secret_value().encode(): name
        for t, name in zip(tokens, "AB", strict=True)
    }
    target = tmp_path / "tokens" / "t.jwt"
    sink = FileTokenSink(path=target)
    rng = random.Random(20240601)
    seen: Counter[str] = Counter()
    started = time.monotonic()

    for _ in range(KILLS):
        pid = os.fork()
        if pid == 0:  # child
            _writer_loop(sink, tokens)
        time.sleep(rng.uniform(0.0005, 0.006))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), "the writer should have been killed mid-loop"

        try:
            content = target.read_bytes()
        except FileNotFoundError:
            seen["absent"] += 1
            continue
        assert content in valid, f"partial or mixed file of {len(content)} bytes"
        seen[valid[content]] += 1
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        for leftover in target.parent.glob(".t.jwt.*.tmp"):
            assert stat.S_IMODE(leftover.stat().st_mode) & ~0o600 == 0

    leftovers = len(list(target.parent.glob(".t.jwt.*.tmp")))
    print(
        f"\n{KILLS} kills in {time.monotonic() - started:.1f} s: "
        f"absent={seen['absent']} A={seen['A']} B={seen['B']} temp files left={leftovers}"
    )
    assert sum(seen.values()) == KILLS
