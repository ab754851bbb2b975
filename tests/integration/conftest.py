"""Shared fixtures: one emulator for the whole session, reset before each test.

``emulator`` is the running :class:`~usegrant_flows.emulator.RunningEmulator`
(default seed, no faults, loopback only). Tests that change faults or read stats use
``emu``: the same emulator with its faults restored, its counters zeroed and its fault
draws re-seeded before the test, and its faults restored after it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from usegrant_flows.emulator import RunningEmulator, run_emulator

#: Seed of the emulator's fault draws in tests, for reproducible fault sequences.
EMULATOR_RANDOM_SEED = 20_240_601


@pytest.fixture(scope="session")
def emulator() -> Iterator[RunningEmulator]:
    """One emulator on a free 127.0.0.1 port for the whole test session."""
    with run_emulator(random_seed=EMULATOR_RANDOM_SEED) as running:
        yield running


@pytest.fixture
def emu(emulator: RunningEmulator) -> Iterator[RunningEmulator]:
    """The session emulator with start-up faults, zeroed stats and re-seeded draws."""
    emulator.reset(random_seed=EMULATOR_RANDOM_SEED)
    yield emulator
    emulator.reset(random_seed=EMULATOR_RANDOM_SEED)
