"""One target's rotation: skip, mint once, keep the last good token, outcome and event.

The sinks and the client here are small fakes with the sink/client interface, so each
rule is checked on its own; the real sinks and the emulator are used by
tests/integration/test_flows_rotate.py. Minted tokens come from a fake issuer
(tests/issuer.py: ES256, its JWKS served by a mock transport), because every minted
token is verified before a sink sees it.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.issuer import Issuer
from usegrant_flows.api.errors import AuthenticationError
from usegrant_flows.api.jwks import JwksCache
from usegrant_flows.api.models import AccessToken
from usegrant_flows.emulator.keys import SigningKey
from usegrant_flows.rotation import outcome as rotation_outcome
from usegrant_flows.rotation.fleet import RotationTarget
from usegrant_flows.rotation.lease import TargetLeases
from usegrant_flows.rotation.policy import RotationAction, RotationResult
from usegrant_flows.rotation.record import MemoryRecord
from usegrant_flows.rotation.runner import FleetRunner
from usegrant_flows.sinks import SinkError

P = "10000000-0000-4000-8000-000000000001"


class FakeSink:
    def __init__(
        self,
        name: str,
        token: AccessToken | None = None,
        *,
        readable: bool = True,
        fail: bool = False,
        refuse: Exception | None = None,
    ) -> None:
        self.name = name
        self.token = token
        self.readable = readable
        self.fail = fail
        self.refuse = refuse
        self.writes = 0
        self.reads = 0
        self.preflights = 0

    async def apreflight(self, metadata: dict[str, Any] | None = None) -> None:
        self.preflights += 1
        if self.refuse is not None:
            raise self.refuse

    async def aread(self) -> AccessToken | None:
        self.reads += 1
        return self.token if self.readable else None

    async def awrite(self, token: AccessToken, metadata: dict[str, Any] | None = None) -> None:
        if self.fail:
            raise SinkError(f"could not write {self.name}")
        self.writes += 1
        self.token = token

    def describe(self) -> str:
        return f"fake {self.name}"


class FakeClient:
    def __init__(
        self, make: Callable[[], AccessToken], *, error: Exception | None = None, delay: float = 0.0
    ) -> None:
        self.make = make
        self.error = error
        self.delay = delay
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0

    async def create_token(self, provider_id: Any, client_id: Any, **options: Any) -> AccessToken:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if self.error is not None:
                raise self.error
            return self.make()
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        pass


ISSUER = Issuer()


@pytest.fixture
def make_token() -> Callable[..., AccessToken]:
    """Tokens of the fake issuer (ES256, sub and aud): what UseGrant mints."""

    def make(lifetime: int = 3600, **claims: Any) -> AccessToken:
        return ISSUER.mint(lifetime=lifetime, **claims)

    return make


class ClientRunner(FleetRunner):
    """A FleetRunner whose client is a fake and whose issuer keys come from ``issuer``."""

    def __init__(self, client: FakeClient, issuer: Issuer = ISSUER, **kwargs: Any) -> None:
        # One machine here: no Prefect-server leases, even when a session harness has set
        # PREFECT_API_URL (they are tested in test_rotation_lease.py and end to end).
        kwargs.setdefault("leases", TargetLeases(enabled=False))
        kwargs.setdefault("record", MemoryRecord({}))  # each test: a new process's record
        super().__init__(jwks=JwksCache(transport=issuer.transport), **kwargs)
        self.fake_client = client

        async def get(credentials: str | None) -> FakeClient:
            return client

        self.clients.get = get  # type: ignore[method-assign,assignment]

    async def key_source(self, target: RotationTarget, client: Any) -> tuple[None, None]:
        return None, None  # discovery at the token's iss (the mock transport answers)


class Runner(ClientRunner):
    """A FleetRunner whose targets' sinks and client are fakes."""

    def __init__(self, sinks: dict[str, list[FakeSink]], client: FakeClient, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.fake_sinks = sinks

    async def sinks_for(self, target: RotationTarget) -> list[Any]:
        return self.fake_sinks[target.name]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    emitted: list[dict[str, Any]] = []
    monkeypatch.setattr(rotation_outcome, "emit_event", lambda **kw: emitted.append(kw))
    return emitted


def target(
    name: str = "aws",
    client: str = "20000000-0000-4000-8000-000000000001",
    **fields: Any,
) -> RotationTarget:
    fields = {"credentials": "prod", **fields}
    return RotationTarget(
        name=name,
        provider_id=P,
        client_id=client,
        sinks=[{"type": "file", "path": "/unused"}],
        **fields,
    )


async def rotate(runner: FleetRunner, t: RotationTarget | None = None) -> RotationResult:
    return await runner.rotate(t or target())


async def test_every_readable_sink_holding_one_fresh_token_skips_the_mint(
    make_token, tmp_path: Path, events
) -> None:
    token = make_token()
    sinks = [FakeSink("a", token), FakeSink("b", token)]
    client = FakeClient(make_token)
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path))
    assert (result.action, client.calls) == (RotationAction.FRESH, 0)
    assert [s.writes for s in sinks] == [0, 0]


async def test_sinks_holding_different_fresh_tokens_are_repaired_without_a_mint(
    make_token, tmp_path: Path, events
) -> None:
    older, newer = make_token(lifetime=3000), make_token(lifetime=3600)
    sinks = [FakeSink("a", older), FakeSink("b", newer)]
    client = FakeClient(make_token)
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path))
    assert (result.action, client.calls) == (RotationAction.REPAIRED, 0)
    assert sinks[0].token is newer and [s.writes for s in sinks] == [1, 0]
    assert result.fingerprint == newer.fingerprint and result.sinks_written == ("fake a",)
    assert [e["event"] for e in events] == ["usegrant.token.repaired"]


async def test_one_stale_sink_mints_once_and_writes_every_sink(
    make_token, tmp_path: Path, events
) -> None:
    due = make_token(lifetime=3600, iat=0)  # issued at the epoch: long past 2/3
    sinks = [FakeSink("a", due), FakeSink("b", None)]
    client = FakeClient(make_token)
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path))
    assert (result.action, client.calls) == (RotationAction.MINTED, 1)
    assert [s.writes for s in sinks] == [1, 1]
    assert sinks[0].token is sinks[1].token
    assert result.sinks_written == ("fake a", "fake b")


async def test_token_past_two_thirds_of_its_life_is_replaced(
    make_token, tmp_path: Path, events
) -> None:
    old = make_token(lifetime=3600, iat=0)  # issued at the epoch: long past 2/3
    sinks = [FakeSink("a", old)]
    result = await rotate(Runner({"aws": sinks}, FakeClient(make_token), lock_dir=tmp_path))
    assert result.action is RotationAction.MINTED and sinks[0].token is not old


async def test_write_only_sinks_alone_always_mint(make_token, tmp_path: Path, events) -> None:
    sinks = [FakeSink("hook", readable=False)]
    client = FakeClient(make_token)
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path))
    assert (result.action, client.calls) == (RotationAction.MINTED, 1)


async def test_write_only_sink_does_not_prevent_a_skip(make_token, tmp_path: Path, events) -> None:
    sinks = [FakeSink("file", make_token()), FakeSink("hook", readable=False)]
    client = FakeClient(make_token)
    runner = Runner({"aws": sinks}, client, lock_dir=tmp_path)
    first, second = await rotate(runner), await rotate(runner)
    # No record at first: the webhook gets the proven token once, then the record vouches.
    assert (first.action, second.action) == (RotationAction.REPAIRED, RotationAction.FRESH)
    assert (client.calls, sinks[1].writes) == (0, 1)


async def test_force_mints_even_when_fresh(make_token, tmp_path: Path, events) -> None:
    sinks = [FakeSink("a", make_token())]
    client = FakeClient(make_token)
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path, force=True))
    assert (result.action, client.calls) == (RotationAction.MINTED, 1)


async def test_failed_mint_leaves_valid_old_tokens_and_is_failed_but_valid(
    make_token, tmp_path: Path, events
) -> None:
    old_valid_but_due = make_token(lifetime=60)
    sinks = [FakeSink("a", old_valid_but_due)]
    client = FakeClient(make_token, error=AuthenticationError(401))
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path))
    assert result.action is RotationAction.FAILED_BUT_VALID
    assert sinks[0].token is old_valid_but_due and sinks[0].writes == 0
    assert result.fingerprint == old_valid_but_due.fingerprint
    assert (
        result.reason == "UseGrant rejected the API key (401): check the credentials block 'prod'"
    )


async def test_failed_mint_with_an_empty_sink_is_failed(make_token, tmp_path: Path, events) -> None:
    sinks = [FakeSink("a", None)]
    client = FakeClient(make_token, error=AuthenticationError(401))
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path))
    assert (result.action, result.error_class) == (RotationAction.FAILED, "AuthenticationError")


async def test_failed_write_to_a_sink_holding_a_valid_token_is_failed_but_valid(
    make_token, tmp_path: Path, events
) -> None:
    kept = make_token(lifetime=60)
    sinks = [FakeSink("a", None), FakeSink("b", kept, fail=True)]
    result = await rotate(Runner({"aws": sinks}, FakeClient(make_token), lock_dir=tmp_path))
    assert result.action is RotationAction.FAILED_BUT_VALID
    assert (result.sinks_written, result.sinks_failed) == (("fake a",), ("fake b",))
    assert sinks[1].token is kept
    assert result.reason is not None and result.reason.startswith("fake b: ")


async def test_failed_write_to_an_empty_sink_is_failed(make_token, tmp_path: Path, events) -> None:
    sinks = [FakeSink("a", None), FakeSink("b", None, fail=True)]
    result = await rotate(Runner({"aws": sinks}, FakeClient(make_token), lock_dir=tmp_path))
    assert result.action is RotationAction.FAILED and sinks[0].writes == 1


async def test_failed_write_to_a_write_only_sink_is_failed(
    make_token, tmp_path: Path, events
) -> None:
    sinks = [FakeSink("file", make_token(lifetime=60)), FakeSink("hook", readable=False, fail=True)]
    result = await rotate(Runner({"aws": sinks}, FakeClient(make_token), lock_dir=tmp_path))
    assert result.action is RotationAction.FAILED


async def test_each_outcome_emits_its_event_about_the_client(
    make_token, tmp_path: Path, events
) -> None:
    fresh = [FakeSink("a", make_token())]
    empty = [FakeSink("b", None)]
    runner = Runner({"aws": fresh, "gcp": empty}, FakeClient(make_token), lock_dir=tmp_path)
    await rotate(runner, target("aws"))
    await rotate(runner, target("gcp", client="20000000-0000-4000-8000-000000000002"))
    assert [e["event"] for e in events] == ["usegrant.token.fresh", "usegrant.token.minted"]
    assert events[1]["resource"]["prefect.resource.id"] == (
        "usegrant.client.20000000-0000-4000-8000-000000000002"
    )
    assert events[1]["resource"]["prefect.resource.name"] == "gcp"


async def test_failure_event_payload_has_reason_and_no_token(
    make_token, tmp_path: Path, events
) -> None:
    sinks = [FakeSink("a", None)]
    await rotate(
        Runner(
            {"aws": sinks},
            FakeClient(make_token, error=AuthenticationError(401)),
            lock_dir=tmp_path,
        )
    )
    [event] = events
    assert event["event"] == "usegrant.token.failed"
    assert event["payload"]["action"] == "failed"
    assert "401" in event["payload"]["reason"]


async def test_minted_event_payload_never_holds_the_token(
    make_token, tmp_path: Path, events
) -> None:
    sinks = [FakeSink("a", None)]
    await rotate(Runner({"aws": sinks}, FakeClient(make_token), lock_dir=tmp_path))
    secret = sinks[0].token.access_token.get_secret_value()
    assert secret not in repr(events) and secret.split(".")[1] not in repr(events)


async def test_overlapping_runs_on_one_target_mint_once(make_token, tmp_path: Path, events) -> None:
    shared = [FakeSink("a", None)]
    client = FakeClient(make_token, delay=0.2)
    first = Runner({"aws": shared}, client, lock_dir=tmp_path)
    second = Runner({"aws": shared}, client, lock_dir=tmp_path)
    results = await asyncio.gather(rotate(first), rotate(second))
    assert client.calls == 1 and client.max_in_flight == 1
    assert sorted(r.action.value for r in results) == ["fresh", "minted"]


async def test_concurrency_bounds_mints_in_flight(make_token, tmp_path: Path, events) -> None:
    names = [f"t{i}" for i in range(10)]
    client = FakeClient(make_token, delay=0.05)
    runner = Runner({n: [FakeSink(n)] for n in names}, client, lock_dir=tmp_path, concurrency=3)
    await asyncio.gather(*(rotate(runner, target(n)) for n in names))
    assert client.calls == 10 and client.max_in_flight == 3


async def test_progress_callback_sees_every_result(make_token, tmp_path: Path, events) -> None:
    seen: list[str] = []
    runner = Runner(
        {"aws": [FakeSink("a")]},
        FakeClient(make_token),
        lock_dir=tmp_path,
        on_result=lambda r: seen.append(r.target),
    )
    await rotate(runner)
    assert seen == ["aws"]


# --- nothing reaches a sink unless the minted token passes verification ---------------


def expired_token() -> AccessToken:
    """exp and expiresAt an hour ago, otherwise sound and signed by the issuer."""
    past = int(time.time()) - 3600
    return ISSUER.mint(iat=past - 3600, nbf=past - 3600, exp=past)


async def test_an_expired_minted_token_is_written_nowhere_and_the_old_one_stays(
    make_token, tmp_path: Path, events
) -> None:
    old = make_token(lifetime=200)  # valid, but inside the 300 s margin: due
    sinks = [FakeSink("a", old)]
    client = FakeClient(expired_token)
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path))
    assert client.calls == 1
    assert (result.action, result.error_class) == (
        RotationAction.FAILED_BUT_VALID,
        "TokenVerificationError",
    )
    assert sinks[0].token is old and sinks[0].writes == 0
    assert result.fingerprint == old.fingerprint  # the row names what the sink still holds
    assert result.reason is not None and "expires at" in result.reason
    [event] = events
    assert event["event"] == "usegrant.token.failed"
    assert "expires at" in event["payload"]["reason"]


async def test_a_refused_token_with_an_empty_sink_is_failed(tmp_path: Path, events) -> None:
    sinks = [FakeSink("a", None)]
    result = await rotate(Runner({"aws": sinks}, FakeClient(expired_token), lock_dir=tmp_path))
    assert result.action is RotationAction.FAILED and sinks[0].writes == 0


def _forged(header: dict[str, Any], signature: str = "c2lnbmF0dXJl") -> Callable[[], AccessToken]:
    def make() -> AccessToken:
        raw = ISSUER.unsigned(header, signature=signature)
        return ISSUER.mint(raw=raw, expires_at=ISSUER.claims()["exp"])

    return make


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"alg": "none"}, "algorithm 'none' is refused"),
        ({"alg": "HS256", "kid": ISSUER.key.kid}, "algorithm 'HS256' is refused"),
    ],
)
async def test_a_token_with_a_refused_algorithm_is_written_nowhere(
    header: dict[str, Any], reason: str, tmp_path: Path, events
) -> None:
    sinks = [FakeSink("a", None)]
    result = await rotate(Runner({"aws": sinks}, FakeClient(_forged(header)), lock_dir=tmp_path))
    assert sinks[0].writes == 0 and result.reason is not None and reason in result.reason


async def test_a_rogue_signature_is_refused_in_full_mode(tmp_path: Path, events) -> None:
    rogue = SigningKey.generate()
    client = FakeClient(lambda: ISSUER.mint(key=rogue, header={"kid": ISSUER.key.kid}))
    sinks = [FakeSink("a", None)]
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path))
    assert result.action is RotationAction.FAILED and sinks[0].writes == 0
    assert result.reason is not None and "signature does not verify" in result.reason


async def test_claims_mode_accepts_a_rogue_signature_and_fetches_no_keys(
    tmp_path: Path, events
) -> None:
    issuer = Issuer()
    rogue = SigningKey.generate()
    client = FakeClient(lambda: issuer.mint(key=rogue, header={"kid": issuer.key.kid}))
    sinks = [FakeSink("a", None)]
    runner = Runner({"aws": sinks}, client, issuer=issuer, lock_dir=tmp_path)
    result = await rotate(runner, target(verify="claims"))
    assert result.action is RotationAction.MINTED and sinks[0].writes == 1
    assert issuer.requests == {}


async def test_claims_mode_still_refuses_an_expired_token(tmp_path: Path, events) -> None:
    sinks = [FakeSink("a", None)]
    runner = Runner({"aws": sinks}, FakeClient(expired_token), lock_dir=tmp_path)
    result = await rotate(runner, target(verify="claims"))
    assert result.action is RotationAction.FAILED and sinks[0].writes == 0


async def test_a_fleet_fetches_its_issuers_keys_once(make_token, tmp_path: Path, events) -> None:
    issuer = Issuer()
    names = [f"t{i}" for i in range(6)]
    runner = Runner(
        {n: [FakeSink(n)] for n in names},
        FakeClient(lambda: issuer.mint()),
        issuer=issuer,
        lock_dir=tmp_path,
    )
    results = await asyncio.gather(*(rotate(runner, target(n)) for n in names))
    assert {r.action for r in results} == {RotationAction.MINTED}
    assert issuer.requests == {"/.well-known/openid-configuration": 1, "/.well-known/jwks": 1}


# --- sinks are preflighted before any read or request ---------------------------------


async def test_a_sink_refusing_its_preflight_fails_the_target_without_a_request(
    make_token, tmp_path: Path, events
) -> None:
    from usegrant_flows.api.errors import ConfigurationError

    good = FakeSink("a", make_token(lifetime=60))
    bad = FakeSink("b", None, refuse=ConfigurationError("token file /x is a named pipe"))
    client = FakeClient(make_token)
    result = await rotate(Runner({"aws": [good, bad]}, client, lock_dir=tmp_path))
    assert client.calls == 0
    assert (good.reads, bad.reads, good.writes) == (0, 0, 0)  # preflight comes before reads
    assert result.action is RotationAction.FAILED
    assert result.reason == "fake b: token file /x is a named pipe"
    assert result.error_class == "ConfigurationError"
    assert events[0]["event"] == "usegrant.token.failed"


def _file_target(path: Path | str) -> RotationTarget:
    return RotationTarget(
        name="file",
        provider_id=P,
        client_id="20000000-0000-4000-8000-000000000001",
        sinks=[{"type": "file", "path": str(path)}],
    )


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "t.jwt")
    return folder / "t.jwt"


def _symlink(folder: Path) -> Path:
    (folder / "real.jwt").write_text("x")
    (folder / "t.jwt").symlink_to(folder / "real.jwt")
    return folder / "t.jwt"


def _directory(folder: Path) -> Path:
    (folder / "t.jwt").mkdir()
    return folder / "t.jwt"


def _world_writable(folder: Path) -> Path:
    (folder / "shared").mkdir()
    (folder / "shared").chmod(0o777)
    return folder / "shared" / "t.jwt"


@pytest.mark.timeout(30)  # a FIFO must never hang the run: fail rather than wait
@pytest.mark.parametrize(
    ("make_path", "why"),
    [
        (_fifo, "named pipe (FIFO)"),
        (_symlink, "symbolic link"),
        (_directory, "is a directory"),
        (_world_writable, "world-writable"),
        (lambda folder: Path("/dev/null"), "character device"),
    ],
    ids=["fifo", "symlink", "directory", "world-writable-folder", "dev-null"],
)
async def test_a_real_file_sink_that_cannot_take_a_token_costs_no_request(
    make_path: Callable[[Path], Path], why: str, make_token, tmp_path: Path, events
) -> None:
    path = make_path(tmp_path)
    client = FakeClient(make_token)
    runner = ClientRunner(client, lock_dir=tmp_path / "locks")
    result = await runner.rotate(_file_target(path))
    assert client.calls == 0
    assert result.action is RotationAction.FAILED
    assert result.reason is not None and why in result.reason
    assert result.reason.startswith(f"file {path} (raw): ")


async def test_a_real_file_sink_gets_a_verified_token(make_token, tmp_path: Path, events) -> None:
    client = FakeClient(make_token)
    runner = ClientRunner(client, lock_dir=tmp_path / "locks")
    result = await runner.rotate(_file_target(tmp_path / "out" / "t.jwt"))
    assert (result.action, client.calls) == (RotationAction.MINTED, 1)
    assert stat.S_IMODE((tmp_path / "out" / "t.jwt").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "make",
    [
        expired_token,
        _forged({"alg": "none"}),
        lambda: ISSUER.mint(key=SigningKey.generate(), header={"kid": ISSUER.key.kid}),
        lambda: ISSUER.mint(aud=None),
        lambda: ISSUER.mint(iat=int(time.time()) + 3600),
    ],
    ids=["expired", "alg-none", "rogue-signature", "no-aud", "future-iat"],
)
async def test_a_refused_token_leaks_nowhere(
    make: Callable[[], AccessToken], tmp_path: Path, events, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.leaks import find_secret

    minted: list[AccessToken] = []

    def remember() -> AccessToken:
        minted.append(make())
        return minted[-1]

    sinks = [FakeSink("a", None)]
    result = await rotate(Runner({"aws": sinks}, FakeClient(remember), lock_dir=tmp_path))
    assert result.error_class == "TokenVerificationError" and sinks[0].writes == 0
    [token] = minted
    haystack = result.model_dump_json() + repr(events) + caplog.text + result.to_markdown()
    assert find_secret(haystack, token.access_token.get_secret_value()) == []
    assert token.fingerprint in (result.reason or "")  # named by fingerprint only


class _At:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url


async def test_keys_come_from_usegrant_jwks_url_for_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USEGRANT_JWKS_URL", "https://keys.example/jwks.json")
    runner = FleetRunner(lock_dir=tmp_path)
    source = await runner.key_source(target(credentials=None), _At("http://127.0.0.1:9"))
    assert source == ("https://keys.example/jwks.json", None)


async def test_a_loopback_api_is_asked_for_discovery_itself(tmp_path: Path) -> None:
    runner = FleetRunner(lock_dir=tmp_path)
    source = await runner.key_source(target(credentials=None), _At("http://127.0.0.1:9"))
    assert source == (None, "http://127.0.0.1:9")


async def test_a_remote_api_leaves_discovery_to_the_tokens_issuer(tmp_path: Path) -> None:
    runner = FleetRunner(lock_dir=tmp_path)
    source = await runner.key_source(target(credentials=None), _At("https://sdk.usegrant.dev"))
    assert source == (None, None)


def test_a_plain_http_usegrant_jwks_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from usegrant_flows.api.errors import ConfigurationError
    from usegrant_flows.api.settings import load_settings

    monkeypatch.setenv("USEGRANT_JWKS_URL", "http://keys.example/jwks.json")
    with pytest.raises(ConfigurationError, match="USEGRANT_JWKS_URL"):
        load_settings()


def test_a_credentials_block_refuses_a_plain_http_jwks_url() -> None:
    from pydantic import ValidationError

    from usegrant_flows.credentials import UseGrantCredentials

    with pytest.raises(ValidationError, match="jwks_url must be an https"):
        UseGrantCredentials(api_key="k", jwks_url="http://keys.example/jwks")  # type: ignore[arg-type]
    block = UseGrantCredentials(api_key="k", jwks_url="")  # type: ignore[arg-type]
    assert block.jwks_url is None


async def test_an_expired_token_leaves_the_old_valid_token_file_byte_for_byte(
    make_token, tmp_path: Path, events
) -> None:
    from usegrant_flows.sinks import FileTokenSink

    path = tmp_path / "t.jwt"
    FileTokenSink(path=path).write(make_token(lifetime=200))  # valid, but due for refresh
    before = path.read_bytes()
    client = FakeClient(expired_token)
    result = await ClientRunner(client, lock_dir=tmp_path / "locks").rotate(_file_target(path))
    assert client.calls == 1
    assert result.action is RotationAction.FAILED_BUT_VALID
    assert path.read_bytes() == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


async def test_a_short_lifetime_asked_for_is_delivered_despite_the_margin(
    tmp_path: Path, events
) -> None:
    # 60 s asked for, 300 s renew_before: the margin is capped at half the lifetime.
    sinks = [FakeSink("a", None)]
    client = FakeClient(lambda: ISSUER.mint(lifetime=60))
    result = await rotate(Runner({"aws": sinks}, client, lock_dir=tmp_path), target(expires_in=60))
    assert result.action is RotationAction.MINTED and sinks[0].writes == 1


async def test_a_token_shorter_than_the_margin_the_target_did_not_ask_for_is_refused(
    tmp_path: Path, events
) -> None:
    # 3600 s asked for, but the API answered with 200 s: due at once, written nowhere.
    sinks = [FakeSink("a", None)]
    client = FakeClient(lambda: ISSUER.mint(lifetime=200))
    runner = Runner({"aws": sinks}, client, lock_dir=tmp_path)
    result = await rotate(runner, target(expires_in=3600))
    assert result.action is RotationAction.FAILED and sinks[0].writes == 0
    assert result.reason is not None and "renew_before (300 s)" in result.reason
