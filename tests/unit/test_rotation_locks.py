"""Per-target advisory locks: overlapping rotations of one target take turns."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from usegrant_flows.rotation.locks import LockTimeoutError, TargetLocks


async def test_second_holder_waits_for_the_first_to_release(tmp_path: Path) -> None:
    locks = TargetLocks(tmp_path)
    order: list[str] = []

    async def hold(label: str, pause: float) -> None:
        async with locks.hold("aws"):
            order.append(f"{label} in")
            await asyncio.sleep(pause)
            order.append(f"{label} out")

    first = asyncio.create_task(hold("first", 0.2))
    await asyncio.sleep(0.05)
    await asyncio.gather(first, hold("second", 0))
    assert order == ["first in", "first out", "second in", "second out"]


async def test_locks_of_different_targets_do_not_block_each_other(tmp_path: Path) -> None:
    locks = TargetLocks(tmp_path, timeout=0.5)
    async with locks.hold("aws"), locks.hold("gcp"):
        pass


async def test_a_lock_held_too_long_times_out_naming_the_target(tmp_path: Path) -> None:
    holder = TargetLocks(tmp_path)
    waiter = TargetLocks(tmp_path, timeout=0.2)
    async with holder.hold("aws"):
        with pytest.raises(LockTimeoutError, match="'aws'"):
            async with waiter.hold("aws"):
                pass


async def test_lock_directory_and_files_are_private(tmp_path: Path) -> None:
    locks = TargetLocks(tmp_path / "locks")
    async with locks.hold("aws"):
        pass
    assert stat.S_IMODE((tmp_path / "locks").stat().st_mode) == 0o700
    assert stat.S_IMODE(locks.path_for("aws").stat().st_mode) == 0o600


def test_lock_file_name_does_not_contain_the_target_name(tmp_path: Path) -> None:
    path = TargetLocks(tmp_path).path_for("../../etc/passwd")
    assert path.parent == tmp_path and "passwd" not in path.name
