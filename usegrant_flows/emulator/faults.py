"""The faults the emulator injects, and how one is picked for a token request.

Faults apply to the token route only (``POST /v1/providers/.../tokens``) except the
latency, which delays every answer but those of the ``/_emulator`` control routes.

**Picking.** For each token request one number ``u`` is drawn in [0, 1) from one seeded
:class:`random.Random` (``random_seed``), so a seed and a request order give the same
faults every run. The rates partition [0, 1) in the order of :data:`FAULT_RATES`: ``u``
below ``drop_rate`` picks ``drop``, below ``drop_rate + fail_rate`` picks ``fail``, and
so on; past the sum of all rates, no fault. A request gets at most one fault, so the
rates must add up to at most 1.

**Proxy faults** strike before the API key and the rate limit are checked, as a proxy
in front of the API would fail before the API counts the request:

* ``drop`` (``drop_rate``, 0..1): the connection is closed without an answer.
* ``fail`` (``fail_rate``, 0..1): the answer is ``fail_status`` (400..599).

**Hostile faults** ("trust nothing from the wire") replace the ``201`` of a request that
passed every check (API key, rate limit, path, body, provider and client), so the
request uses quota and the client sees what a compromised or broken server would send.
A request refused by a check gets its refusal and no fault; it is not counted as one.
All answer ``201``:

* ``slow_body`` (``slow_body_rate``, 0..1): headers at once with the ``Content-Length``
  of a sound token body, then that body one byte every ``slow_body_interval_ms``
  (1..600000 ms, default 2000), the first byte at once.
* ``endless_body`` (``endless_body_rate``, 0..1): a chunked body ``{"accessToken":"``
  followed by :data:`ENDLESS_CHUNK_BYTES` of ``a`` every
  :data:`ENDLESS_CHUNK_INTERVAL_S` seconds (at most ~1.6 MB/s), forever.
* ``expired`` (``expired_rate``, 0..1): a token signed by the provider's real key whose
  ``exp`` and ``expiresAt`` are :data:`EXPIRED_BY_S` (3600 s) in the past.
* ``bad_signature`` (``bad_signature_rate``, 0..1): a token with the real key's
  ``kid`` signed by a rogue private key, so the JWKS does not verify it.
* ``alg_none`` (``alg_none_rate``, 0..1): a token with the header ``{"alg":"none"}``
  and an empty signature.
* ``oversize`` (``oversize_rate``, 0..1): a soundly signed token padded with a claim of
  :data:`OVERSIZE_PAD_BYTES` (2 MiB), a body far over 64 KiB.
* ``nested`` (``nested_rate``, 0..1): a JSON body of :data:`NESTED_DEPTH` (100000)
  nested arrays, ``[[[...]]]``.
* ``garbage`` (``garbage_rate``, 0..1): a body that is not JSON (nor UTF-8), served as
  ``application/json``.

The two streamed faults stop when the client disconnects and, at the latest, after
``stream_limit_s`` seconds (0 < s <= 3600, default 120), when the emulator aborts the
connection. ``GET /_emulator/stats`` counts every injected fault in
``faults_injected`` and the streams still running in ``active_streams``.

The rate limiter and its helper live in :mod:`.limiter`; they are re-exported here.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator

from usegrant_flows.emulator.limiter import SlidingWindowLimiter, max_in_sliding_window

__all__ = [
    "ENDLESS_CHUNK_BYTES",
    "ENDLESS_CHUNK_INTERVAL_S",
    "EXPIRED_BY_S",
    "FAULT_NAMES",
    "FAULT_RATES",
    "HOSTILE_FAULTS",
    "NESTED_DEPTH",
    "OVERSIZE_PAD_BYTES",
    "Faults",
    "SlidingWindowLimiter",
    "max_in_sliding_window",
    "pick_fault",
]

#: Fault name -> its rate field, in the order the rates partition [0, 1).
FAULT_RATES: dict[str, str] = {
    "drop": "drop_rate",
    "fail": "fail_rate",
    "slow_body": "slow_body_rate",
    "endless_body": "endless_body_rate",
    "expired": "expired_rate",
    "bad_signature": "bad_signature_rate",
    "alg_none": "alg_none_rate",
    "oversize": "oversize_rate",
    "nested": "nested_rate",
    "garbage": "garbage_rate",
}
#: Every fault name, as counted in the stats' ``faults_injected``.
FAULT_NAMES: tuple[str, ...] = tuple(FAULT_RATES)
#: The faults that replace a ``201`` (see the module docstring).
HOSTILE_FAULTS: frozenset[str] = frozenset(FAULT_NAMES) - {"drop", "fail"}
#: Bytes of ``a`` per chunk of an endless body.
ENDLESS_CHUNK_BYTES = 16 * 1024
#: Seconds between two chunks of an endless body: bounds the emulator's CPU and the
#: bandwidth one stream takes from a shared machine.
ENDLESS_CHUNK_INTERVAL_S = 0.01
#: Seconds in the past of an expired token's ``exp``.
EXPIRED_BY_S = 3600
#: Bytes of the padding claim of an oversize token.
OVERSIZE_PAD_BYTES = 2 * 1024 * 1024
#: Nesting depth of the nested-JSON body.
NESTED_DEPTH = 100_000
# Rates are floats: 0.7 + 0.2 + 0.1 must pass although it sums to 1.0000000000000002.
_RATE_SLACK = 1e-9


class Faults(BaseModel):
    """Faults and limits the emulator injects (see the module docstring).

    Attributes:
        latency_ms: Milliseconds added to every answer, 0..60000.
        fail_rate: Share of token requests answered with ``fail_status``, 0..1.
        fail_status: Status of the failed answers, 400..599: 502/503/504 come with an
            HTML body (a proxy page), 429 with ``Retry-After: 1``, others with
            ``{"code", "message"}``.
        rate_limit: Requests admitted per API key per ``rate_window``; ``None`` for no
            limit (the real API allows 1000 per hour).
        rate_window: Length of the rate-limit window in seconds, > 0 (default 3600).
        drop_rate: Share of token requests whose connection is closed without an
            answer, 0..1.
        slow_body_rate: Share of token requests whose ``201`` body trickles, 0..1.
        slow_body_interval_ms: Milliseconds between two bytes of a slow body,
            1..600000 (default 2000).
        endless_body_rate: Share of token requests whose ``201`` body never ends, 0..1.
        expired_rate: Share of token requests given a token expired an hour ago, 0..1.
        bad_signature_rate: Share of token requests given a token signed by a rogue
            key under the real ``kid``, 0..1.
        alg_none_rate: Share of token requests given an unsigned ``alg: none`` token,
            0..1.
        oversize_rate: Share of token requests given a body over 2 MiB, 0..1.
        nested_rate: Share of token requests given 100000 levels of nested JSON, 0..1.
        garbage_rate: Share of token requests given a body that is not JSON, 0..1.
        stream_limit_s: Seconds after which a slow or endless body is cut off by
            aborting the connection, 0 < s <= 3600 (default 120).

    All ``*_rate`` fields together must not exceed 1.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    latency_ms: float = Field(default=0.0, ge=0, le=60_000)
    fail_rate: float = Field(default=0.0, ge=0, le=1)
    fail_status: int = Field(default=503, ge=400, le=599)
    rate_limit: int | None = Field(default=None, ge=1)
    rate_window: float = Field(default=3600.0, gt=0)
    drop_rate: float = Field(default=0.0, ge=0, le=1)
    slow_body_rate: float = Field(default=0.0, ge=0, le=1)
    slow_body_interval_ms: float = Field(default=2000.0, ge=1, le=600_000)
    endless_body_rate: float = Field(default=0.0, ge=0, le=1)
    expired_rate: float = Field(default=0.0, ge=0, le=1)
    bad_signature_rate: float = Field(default=0.0, ge=0, le=1)
    alg_none_rate: float = Field(default=0.0, ge=0, le=1)
    oversize_rate: float = Field(default=0.0, ge=0, le=1)
    nested_rate: float = Field(default=0.0, ge=0, le=1)
    garbage_rate: float = Field(default=0.0, ge=0, le=1)
    stream_limit_s: float = Field(default=120.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _rates_add_up(self) -> Faults:
        rates = {field: getattr(self, field) for field in FAULT_RATES.values()}
        total = math.fsum(rates.values())
        if total > 1 + _RATE_SLACK:
            named = " + ".join(f"{field}={rate:g}" for field, rate in rates.items() if rate)
            raise ValueError(
                f"the fault rates must add up to at most 1 (one fault per request), "
                f"got {named} = {total:g}"
            )
        return self


def pick_fault(faults: Faults, draw: float) -> str | None:
    """Map a draw to the fault it falls on (see the module docstring).

    Args:
        faults: The faults in force.
        draw: A number in [0, 1).

    Returns:
        A name of :data:`FAULT_NAMES`, or ``None`` for a sound answer.

    Example:
        >>> faults = Faults(drop_rate=0.25, fail_rate=0.25, garbage_rate=0.25)
        >>> [pick_fault(faults, u) for u in (0.1, 0.25, 0.49, 0.5, 0.74, 0.75)]
        ['drop', 'fail', 'fail', 'garbage', 'garbage', None]
    """
    bound = 0.0
    for name, field in FAULT_RATES.items():
        bound += getattr(faults, field)
        if draw < bound:
            return name
    return None
