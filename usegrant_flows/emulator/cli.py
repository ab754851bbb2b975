"""The ``usegrant-flows emulator`` command: run the emulator in the foreground."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

from cyclopts import Parameter

from usegrant_flows.api.checks import is_loopback
from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.emulator.state import EmulatorState

__all__ = ["serve"]


def _print_banner(state: EmulatorState, base_url: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]UseGrant emulator[/bold] listening on [cyan]{base_url}[/cyan]", soft_wrap=True
    )
    table = Table(title="Providers and clients")
    for column in ("provider", "client", "audience", "subject", "issuer"):
        table.add_column(column, overflow="fold")
    for provider in state.seed.providers:
        for client in provider.clients:
            table.add_row(
                f"{provider.name}\n{provider.id}",
                f"{client.name}\n{client.id}",
                client.audience,
                client.subject,
                provider.issuer(),
            )
    console.print(table)
    console.print("API keys (the emulator's own throwaway dev keys, not real UseGrant keys):")
    for key in state.seed.api_keys:
        console.print(f"  {key.get_secret_value()}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"JWKS: {base_url}/.well-known/jwks   stats: {base_url}/_emulator/stats",
        soft_wrap=True,
    )
    faults = state.faults.model_dump()
    console.print(f"Faults: {faults}", markup=False, highlight=False, soft_wrap=True)
    console.print("Press Ctrl-C to stop.")


def serve(
    *,
    host: str | None = None,
    port: int = 8787,
    seed: Path | None = None,
    api_key: str | None = None,
    latency_ms: float = 0,
    fail_rate: float = 0.0,
    fail_status: int = 503,
    rate_limit: int | None = None,
    rate_window: float = 3600.0,
    drop_rate: float = 0.0,
    slow_body_rate: float = 0.0,
    slow_body_interval_ms: float = 2000.0,
    endless_body_rate: float = 0.0,
    expired_rate: float = 0.0,
    bad_signature_rate: float = 0.0,
    alg_none_rate: float = 0.0,
    oversize_rate: float = 0.0,
    nested_rate: float = 0.0,
    garbage_rate: float = 0.0,
    stream_limit_s: float = 120.0,
    random_seed: Annotated[
        int | None, Parameter(name=["--random-seed", "--fault-seed"], show_default=False)
    ] = None,
) -> None:
    """Run a local UseGrant API emulator that signs real ES256 JWTs.

    Serves ``POST /v1/providers/{providerId}/clients/{clientId}/tokens``,
    ``/.well-known/jwks``, ``/.well-known/openid-configuration`` and the
    ``/_emulator/stats`` and ``/_emulator/faults`` control routes. Prints the seed (with
    the emulator's own throwaway API key) at start-up; Ctrl-C stops it.

    Args:
        host: Address to listen on (default 127.0.0.1). A non-loopback address is
            allowed only when given explicitly, with a warning.
        port: TCP port, 0..65535 (0 picks a free one).
        seed: JSON seed file with api_keys and providers; default: one provider with
            three clients and a random key.
        api_key: The dev key the default seed accepts instead of a random one (any
            ``usegrant_...`` string: a throwaway, never a real key); not with --seed.
        latency_ms: Milliseconds added to every answer, 0..60000.
        fail_rate: Share of token requests answered with fail_status, 0..1.
        fail_status: Status of injected failures, 400..599 (502/503/504 come with an
            HTML body, 429 with Retry-After).
        rate_limit: Requests per API key per rate_window (the real API: 1000 per hour);
            default no limit.
        rate_window: Rate-limit window in seconds (sliding window log).
        drop_rate: Share of token requests closed without an answer, 0..1.
        slow_body_rate: Share of token requests whose 201 body comes one byte every
            slow_body_interval_ms, 0..1.
        slow_body_interval_ms: Milliseconds between two bytes of a slow body, 1..600000.
        endless_body_rate: Share of token requests whose 201 body never ends, 0..1.
        expired_rate: Share of token requests given a token expired an hour ago, 0..1.
        bad_signature_rate: Share of token requests given a token signed by a rogue key
            under the real kid, 0..1.
        alg_none_rate: Share of token requests given an unsigned alg=none token, 0..1.
        oversize_rate: Share of token requests given a body over 2 MiB, 0..1.
        nested_rate: Share of token requests given 100000 levels of nested JSON, 0..1.
        garbage_rate: Share of token requests given a body that is not JSON, 0..1.
        stream_limit_s: Seconds after which a slow or endless body is cut off,
            0 < s <= 3600.
        random_seed: Seed of the fault draws, for reproducible runs (all the *_rate
            flags together must not exceed 1; one fault per request at most).

    Raises:
        SystemExit: A bad seed or fault setting, or the address cannot be bound.
    """
    from usegrant_flows.emulator.server import bind_socket, build_server, make_state

    if host is None:
        host = "127.0.0.1"
    elif not is_loopback(host):
        print(
            f"warning: listening on non-loopback address {host}: anyone who can reach it "
            "can mint emulator tokens with the printed dev key",
            file=sys.stderr,
        )
    try:
        if api_key is not None:
            if seed is not None:
                raise ConfigurationError("--api-key and --seed exclude each other")
            from usegrant_flows.emulator.seed import default_seed

            chosen: Any = default_seed(api_key)
        else:
            chosen = seed
        state = make_state(
            chosen,
            random_seed=random_seed,
            latency_ms=latency_ms,
            fail_rate=fail_rate,
            fail_status=fail_status,
            rate_limit=rate_limit,
            rate_window=rate_window,
            drop_rate=drop_rate,
            slow_body_rate=slow_body_rate,
            slow_body_interval_ms=slow_body_interval_ms,
            endless_body_rate=endless_body_rate,
            expired_rate=expired_rate,
            bad_signature_rate=bad_signature_rate,
            alg_none_rate=alg_none_rate,
            oversize_rate=oversize_rate,
            nested_rate=nested_rate,
            garbage_rate=garbage_rate,
            stream_limit_s=stream_limit_s,
        )
        sock = bind_socket(host, port)
    except ConfigurationError as exc:
        raise SystemExit(f"error: {exc}") from None
    try:
        bound_port = sock.getsockname()[1]
        shown_host = f"[{host}]" if ":" in host else host
        _print_banner(state, f"http://{shown_host}:{bound_port}")
        sys.stdout.flush()
        build_server(state).run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on Ctrl-C, then re-raises the signal.
        print("UseGrant emulator stopped.")
    finally:
        sock.close()
