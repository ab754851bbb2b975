"""The refresh policy, the outcome rules and the one-line reasons (pure logic, no Prefect)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import jwt
import pytest

from usegrant_flows.api.errors import (
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    ServerError,
    UseGrantConnectionError,
)
from usegrant_flows.api.models import AccessToken, format_js_datetime
from usegrant_flows.rotation.policy import (
    RefreshPolicy,
    RotationAction,
    RotationResult,
    effective_expiry,
    explain_error,
    fallback_action,
    summarize_failures,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


def token(
    *, iat: datetime | None = T0, exp: datetime = T0 + HOUR, expires_at: datetime | None = None
) -> AccessToken:
    claims: dict[str, object] = {"jti": "j", "exp": int(exp.timestamp())}
    if iat is not None:
        claims["iat"] = int(iat.timestamp())
    encoded = jwt.encode(claims, "k" * 32, algorithm="HS256")
    return AccessToken.model_validate(
        {
            "accessToken": encoded,
            "expiresAt": format_js_datetime(expires_at or exp),
            "type": "Bearer",
        }
    )


def test_token_is_due_once_two_thirds_of_its_lifetime_passed() -> None:
    policy = RefreshPolicy(jitter=0)
    t = token()
    assert policy.is_fresh(t, identity="a", now=T0 + timedelta(minutes=39, seconds=59))
    assert not policy.is_fresh(t, identity="a", now=T0 + timedelta(minutes=40))


def test_renew_before_floor_wins_when_it_comes_first() -> None:
    policy = RefreshPolicy(jitter=0, renew_before=1800)
    t = token()
    assert policy.is_fresh(t, identity="a", now=T0 + timedelta(minutes=29))
    assert not policy.is_fresh(t, identity="a", now=T0 + timedelta(minutes=30))


def test_token_shorter_than_the_floor_is_always_due() -> None:
    policy = RefreshPolicy(jitter=0, renew_before=600)
    t = token(exp=T0 + timedelta(minutes=5))
    assert not policy.is_fresh(t, identity="a", now=T0)


def test_earlier_of_exp_claim_and_expires_at_is_trusted() -> None:
    late_api = token(exp=T0 + HOUR, expires_at=T0 + 2 * HOUR)
    early_api = token(exp=T0 + 2 * HOUR, expires_at=T0 + HOUR)
    assert effective_expiry(late_api) == T0 + HOUR
    assert effective_expiry(early_api) == T0 + HOUR


def test_disagreeing_expiry_uses_the_earlier_one_for_freshness() -> None:
    policy = RefreshPolicy(jitter=0)
    t = token(exp=T0 + 2 * HOUR, expires_at=T0 + HOUR)
    assert not policy.is_fresh(t, identity="a", now=T0 + timedelta(minutes=41))


def test_token_without_iat_only_has_the_floor() -> None:
    policy = RefreshPolicy(jitter=0, renew_before=300)
    t = token(iat=None)
    assert policy.is_fresh(t, identity="a", now=T0 + timedelta(minutes=54))
    assert not policy.is_fresh(t, identity="a", now=T0 + timedelta(minutes=55))


def test_jitter_is_deterministic_per_target() -> None:
    policy = RefreshPolicy(jitter=0.1)
    first = policy.refresh_point(T0, T0 + HOUR, identity="aws-prod")
    again = policy.refresh_point(T0, T0 + HOUR, identity="aws-prod")
    assert first == again


def test_jitter_only_moves_the_refresh_point_earlier_and_stays_bounded() -> None:
    policy = RefreshPolicy(jitter=0.1)
    latest = T0 + HOUR * (2 / 3)
    earliest = T0 + HOUR * (2 / 3 - 0.1)
    points = [policy.refresh_point(T0, T0 + HOUR, identity=f"t{i}") for i in range(200)]
    assert all(earliest <= p <= latest for p in points)


def test_jitter_spreads_a_fleet_minted_at_once() -> None:
    policy = RefreshPolicy(jitter=0.1)
    points = {policy.refresh_point(T0, T0 + HOUR, identity=f"t{i}") for i in range(50)}
    assert len(points) > 40


def test_policy_rejects_fraction_out_of_range() -> None:
    with pytest.raises(ValueError, match="refresh_fraction"):
        RefreshPolicy(refresh_fraction=1.0)


def test_failure_with_every_sink_holding_a_valid_token_is_failed_but_valid() -> None:
    now = datetime.now(timezone.utc)
    valid = token(iat=now, exp=now + HOUR)
    assert fallback_action([valid, valid], now) is RotationAction.FAILED_BUT_VALID


def test_failure_with_a_sink_holding_nothing_is_failed() -> None:
    now = datetime.now(timezone.utc)
    valid = token(iat=now, exp=now + HOUR)
    assert fallback_action([valid, None], now) is RotationAction.FAILED


def test_failure_with_an_expired_old_token_is_failed() -> None:
    now = datetime.now(timezone.utc)
    expired = token(iat=now - 2 * HOUR, exp=now - HOUR)
    assert fallback_action([expired], now) is RotationAction.FAILED


def test_bad_key_reason_names_the_credentials_block() -> None:
    reason = explain_error(AuthenticationError(401, "UNAUTHORIZED", "bad key"), credentials="prod")
    assert reason == "UseGrant rejected the API key (401): check the credentials block 'prod'"


def test_bad_key_reason_without_block_points_at_the_settings() -> None:
    reason = explain_error(AuthenticationError(401))
    assert "USEGRANT_API_KEY" in reason and "401" in reason


def test_unknown_client_reason_names_both_ids() -> None:
    reason = explain_error(NotFoundError(404, "NOT_FOUND"), provider_id="P-1", client_id="C-2")
    assert "P-1" in reason and "C-2" in reason and "404" in reason


def test_rate_limit_reason_says_until_when() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    reason = explain_error(RateLimitError(429, retry_after=90), now=now)
    assert reason.startswith("rate limited until 2026-01-01 12:01:30Z (429)")


def test_server_error_reason_says_the_next_run_retries() -> None:
    assert explain_error(ServerError(503)) == (
        "UseGrant failed (503) after retries: the next run retries"
    )


def test_connection_error_reason_is_one_line() -> None:
    reason = explain_error(UseGrantConnectionError("connect failed\nsecond line"))
    assert "\n" not in reason and reason.startswith("could not reach UseGrant")


def test_unexpected_error_reason_is_class_and_first_words_capped() -> None:
    reason = explain_error(RuntimeError("x" * 1000))
    assert reason.startswith("RuntimeError: ") and len(reason) == 300


def _result(name: str, action: RotationAction, reason: str | None = None) -> RotationResult:
    return RotationResult(target=name, provider_id="p", client_id="c", action=action, reason=reason)


def test_summary_names_only_failed_targets() -> None:
    results = [
        _result("a", RotationAction.MINTED),
        _result("b", RotationAction.FAILED, "bad key"),
        _result("c", RotationAction.FAILED_BUT_VALID, "503"),
    ]
    assert summarize_failures(results) == "1 of 3 targets failed: b (bad key)"


def test_summary_is_none_without_failed_targets() -> None:
    assert summarize_failures([_result("a", RotationAction.FAILED_BUT_VALID)]) is None


def test_summary_caps_the_list_of_names() -> None:
    results = [_result(f"t{i}", RotationAction.FAILED) for i in range(12)]
    assert summarize_failures(results, limit=2) == "12 of 12 targets failed: t0, t1, and 10 more"


def test_result_row_holds_short_strings_only() -> None:
    result = RotationResult(
        target="aws",
        provider_id="p",
        client_id="c",
        action=RotationAction.MINTED,
        fingerprint="abcdef123456",
        expires_at=T0,
        sinks_written=("file /x (raw)", "secret block s"),
    )
    assert result.as_row() == {
        "target": "aws",
        "client": "c",
        "action": "minted",
        "fingerprint": "abcdef123456",
        "expires at": "2026-01-01 00:00:00Z",
        "sinks written": "file /x (raw), secret block s",
        "sinks failed": "",
        "error": "",
        "reason": "",
    }


def test_markdown_report_tells_where_the_token_went_and_why_it_failed() -> None:
    result = RotationResult(
        target="aws",
        provider_id="p",
        client_id="c",
        action=RotationAction.FAILED,
        sinks_failed=("file /x (raw)",),
        error_class="AuthenticationError",
        reason="UseGrant rejected the API key (401): check the credentials block 'prod'",
    )
    text = result.to_markdown()
    assert "| not written to | file /x (raw) |" in text
    assert "**What went wrong** (AuthenticationError): UseGrant rejected the API key" in text


def test_real_clock_token_is_fresh_right_after_minting() -> None:
    now = int(time.time())
    encoded = jwt.encode({"iat": now, "exp": now + 3600}, "k" * 32, algorithm="HS256")
    t = AccessToken.model_validate(
        {
            "accessToken": encoded,
            "expiresAt": format_js_datetime(datetime.fromtimestamp(now + 3600, timezone.utc)),
        }
    )
    assert RefreshPolicy().is_fresh(t, identity="x")
