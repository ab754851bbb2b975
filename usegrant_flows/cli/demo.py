"""The README's main job: the token rotation end to end on this machine, nothing to set up.

``usegrant-flows demo`` (or ``python -m usegrant_flows.cli.demo``):

1. starts the UseGrant emulator on a free loopback port (real ES256 JWTs, JWKS);
2. uses Prefect's embedded API with its own ``PREFECT_HOME`` under ``./demo/``, so your
   own Prefect settings and server are left alone;
3. saves a ``UseGrantCredentials`` block pointing at the emulator, then runs the
   ``rotate-tokens`` flow for the emulator's three clients (AWS, GCP and Azure
   audiences): each token goes to a file ``./demo/tokens/<client>.jwt`` (mode 0600) and
   a Prefect Secret block ``usegrant-demo-<client>``;
4. verifies every token against the emulator's JWKS and prints a table;
   The first run is forced (``force=True``): each emulator start has new signing keys,
   so tokens left by an earlier demo would look fresh but no longer verify.
5. runs the flow again: every token is fresh, so it is skipped with zero API calls
   (the emulator's request counters prove it).

Prefect's console logs are turned down to WARNING so the output stays readable. The
demo must run in a fresh process: Prefect reads its settings when first imported.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["CREDENTIALS_BLOCK", "main"]

#: Name of the credentials block the demo saves in its own Prefect home.
CREDENTIALS_BLOCK = "usegrant-demo"

# Outer Prefect settings that would point the demo at another API or profile.
_OUTER_SETTINGS = ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH")


def _prepare_prefect(home: Path) -> None:
    """Point Prefect at an embedded API and a home under the demo folder (before import)."""
    for name in _OUTER_SETTINGS:
        os.environ.pop(name, None)
    os.environ.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
        }
    )


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "client"


@contextmanager
def _step(progress: Progress, text: str) -> Iterator[None]:
    task = progress.add_task(text, total=1)
    yield
    progress.update(task, completed=1, description=f"[green]✓[/] {text}")


def _run(flow_call: Awaitable[Any]) -> Any:
    """Run one async flow call to its final state (flows return awaitables, not coroutines)."""

    async def run() -> Any:
        return await flow_call

    return asyncio.run(run())


def main(directory: Path = Path("demo")) -> None:
    """Run the rotation demo: emulator, embedded Prefect API, two rotation runs.

    Args:
        directory: Folder for the demo's tokens and Prefect home (created if missing).

    Raises:
        SystemExit: With status 1 when a token does not verify or the second run
            called the API.
    """
    folder = directory.expanduser().resolve()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _prepare_prefect(folder / "prefect-home")

    # Imported here, after the environment is set: Prefect reads it on import.
    from usegrant_flows.api.verify import verify_token
    from usegrant_flows.credentials import UseGrantCredentials
    from usegrant_flows.emulator import run_emulator
    from usegrant_flows.rotation.policy import RotationResult
    from usegrant_flows.rotation.rotate_flow import rotate_tokens
    from usegrant_flows.sinks import FileTokenSink, SecretBlockSink

    console = Console()
    console.print(f"[bold]usegrant-flows demo[/] in {folder}")
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with run_emulator() as emu, Progress(*columns, console=console) as progress:
        with _step(progress, f"UseGrant emulator on {emu.base_url}"):
            provider = emu.seed.providers[0]
        with _step(progress, "Prefect embedded API, credentials block saved"):
            credentials = UseGrantCredentials(api_key=emu.api_key, base_url=emu.base_url)
            credentials.save(CREDENTIALS_BLOCK, overwrite=True)
        targets: list[dict[str, Any]] = []
        for client in provider.clients:
            slug = _slug(client.name)
            targets.append(
                {
                    "name": f"demo-{slug}",
                    "provider_id": str(provider.id),
                    "client_id": str(client.id),
                    "credentials": CREDENTIALS_BLOCK,
                    "expires_in": 3600,
                    "sinks": [
                        {"type": "file", "path": str(folder / "tokens" / f"{slug}.jwt")},
                        {"type": "secret-block", "secret_block_name": f"usegrant-demo-{slug}"},
                    ],
                }
            )
        # Forced: tokens left by an earlier demo were signed by an earlier emulator's keys.
        with _step(progress, f"first run: mint {len(targets)} targets (forced)"):
            first = _run(rotate_tokens(targets=targets, force=True, return_state=True))
        if not first.is_completed():
            progress.stop()
            console.print(f"[red]The rotation failed:[/] {first.message}")
            raise SystemExit(1)
        results: list[RotationResult] = first.result()
        verified: dict[str, str] = {}
        with _step(progress, "tokens verified against the emulator's JWKS"):
            for target, client in zip(targets, provider.clients, strict=True):
                sinks = [
                    FileTokenSink(path=target["sinks"][0]["path"]),
                    SecretBlockSink(secret_block_name=target["sinks"][1]["secret_block_name"]),
                ]
                checks = []
                for sink in sinks:
                    token = sink.read()
                    if token is None:
                        checks.append("missing")
                        continue
                    verify_token(token, emu.jwks_url, audience=client.audience)
                    checks.append("ok")
                verified[target["name"]] = " / ".join(checks)
        emu.reset_stats()
        with _step(progress, "second run: every token is fresh"):
            second = _run(rotate_tokens(targets=targets, return_state=True))
            again: list[RotationResult] = second.result()
        calls = int(emu.stats()["token_calls"]["total"])

    table = Table(title="First run", box=box.SIMPLE)
    table.add_column("target", no_wrap=True, min_width=10)
    table.add_column("action", no_wrap=True, min_width=6)
    table.add_column("fingerprint", no_wrap=True, min_width=12)
    table.add_column("expires UTC", no_wrap=True, min_width=11)
    table.add_column("file/secret", no_wrap=True, min_width=11)
    table.add_column("audience", overflow="ellipsis", no_wrap=True, max_width=20)
    for result, client in zip(results, provider.clients, strict=True):
        table.add_row(
            result.target,
            result.action.value,
            result.fingerprint or "",
            result.expires_at.strftime("%H:%M:%S") if result.expires_at else "",
            verified[result.target],
            client.audience,
        )
    console.print(table)
    fresh = sum(1 for r in again if r.action.value == "fresh")
    console.print(
        f"Second run: {fresh} of {len(again)} targets fresh, "
        f"[bold]{calls}[/] API calls to UseGrant (emulator counters)."
    )
    console.print(
        f"Tokens: {folder / 'tokens'} (files, mode 0600) and Secret blocks usegrant-demo-*; "
        f"Prefect home: {folder / 'prefect-home'}."
    )
    bad = [name for name, check in verified.items() if check != "ok / ok"]
    if bad or calls != 0 or fresh != len(again):
        console.print(f"[red]Demo check failed[/]: unverified={bad}, second-run calls={calls}")
        raise SystemExit(1)


if __name__ == "__main__":
    main(*(Path(arg) for arg in sys.argv[1:2]))
