"""A person starts the mint-token deployment from the Prefect UI's "Custom run" form.

Against a real Prefect server (API + UI) with our blocks registered, a UseGrantCredentials
block pointing at the emulator, a saved UseGrant Fleet block whose target writes a
Secret block, and the mint-token deployment of ``prefect.yaml``, headless Chromium opens
the UI at its root (the server's default UI), goes to the deployment, opens Run -> Custom
run, picks the fleet in the block picker, types the target's name and a shorter expiry,
and submits. The form shows readable titles and no "None" switches: a run names only
what the operator saved. A process worker runs the flow once. The UI must then show the
run Completed with our artifact, and the Secret block must hold a token that verifies
against the emulator's JWKS.

Chromium is Debian's (``apt-get install -y chromium``, ``/usr/bin/chromium``); no browser
is downloaded at run time. The browser may only talk to 127.0.0.1: every other request is
aborted (the UI bundle would otherwise try to reach an analytics host), and host name
resolution is disabled except for loopback.

Screenshots of the form, the refused form and the finished run are written to
``test-outputs/ui-custom-run/`` on every run.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from playwright.sync_api import Browser, Locator, Page, Request, expect, sync_playwright

if TYPE_CHECKING:
    from tests.e2e.conftest import PrefectServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--lang=en-US",  # the browser's own messages (form validation) in English
    # No DNS: nothing but loopback can be reached even if a request slips past the route.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
VIEWPORT = {"width": 1280, "height": 900}
UI_TIMEOUT_MS = 30_000  # any single UI wait, milliseconds
MINT_ENTRYPOINT = "usegrant_flows.rotation.mint_flow.mint_token"
ARTIFACT_KEY = "usegrant-mint-token"  # flows/mint_token.py ARTIFACT_KEY
SECRET_BLOCK = "e2e-ui-mint-token"
FLEET_BLOCK = "e2e-ui-fleet"
TARGET = "ui-aws"
TARGET_LIFETIME = 1800  # seconds, the fleet target's own
EXPIRES_IN = 900  # seconds, shorter: chosen in the form
REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT_DIR = REPO_ROOT / "test-outputs" / "ui-custom-run"

expect.set_options(timeout=UI_TIMEOUT_MS)


@dataclass(frozen=True)
class MintDeployment:
    """The deployed mint-token deployment."""

    id: str
    name: str
    pool: str


@dataclass(frozen=True)
class UIRun:
    """A flow run created by submitting the Custom run form."""

    flow_run_id: str
    flow_run_name: str
    provider_id: str
    client_id: str
    audience: str
    issuer: str


def _mint_token_spec() -> dict[str, Any]:
    """Return the prefect.yaml deployment whose entrypoint is the mint-token flow."""
    project = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    specs = [d for d in project["deployments"] if d.get("entrypoint") == MINT_ENTRYPOINT]
    assert len(specs) == 1, f"prefect.yaml must have one deployment of {MINT_ENTRYPOINT}"
    return dict(specs[0])


@pytest.fixture(scope="module")
def mint_deployment(prefect_server: PrefectServer, registered_blocks: None) -> MintDeployment:
    """Deploy the mint-token deployment of prefect.yaml, the way a user does."""
    spec = _mint_token_spec()
    pool = spec["work_pool"]["name"]
    prefect_server.run_cli("work-pool", "create", pool, "--type", "process", "--overwrite")
    prefect_server.run_cli("--no-prompt", "deploy", "--name", spec["name"], cwd=REPO_ROOT)
    deployment = prefect_server.api("GET", f"/deployments/name/mint-token/{spec['name']}")
    return MintDeployment(id=deployment["id"], name=deployment["name"], pool=pool)


@pytest.fixture(scope="module")
def fleet_block(prefect_server: PrefectServer, credentials_block: str, emulator: Any) -> str:
    """The operator's saved fleet: one target whose token goes to a Secret block."""
    from usegrant_flows.rotation.fleet_block import UseGrantFleet

    provider = emulator.seed.providers[0]
    fleet = UseGrantFleet.model_validate(
        {
            "targets": [
                {
                    "name": TARGET,
                    "provider_id": str(provider.id),
                    "client_id": str(provider.clients[0].id),
                    "credentials": credentials_block,
                    "expires_in": TARGET_LIFETIME,
                    "sinks": [{"type": "secret-block", "secret_block_name": SECRET_BLOCK}],
                }
            ]
        }
    )
    prefect_server.call(fleet.save, FLEET_BLOCK, overwrite=True)
    return FLEET_BLOCK


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium, for the module."""
    assert CHROMIUM.exists(), "Chromium is missing: apt-get install -y chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def loopback_page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context and page that can reach 127.0.0.1 only."""
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")  # type: ignore[arg-type]
    context.route(lambda url: not url.startswith("http://127.0.0.1:"), lambda r: r.abort())
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page that can reach 127.0.0.1 only."""
    with loopback_page(browser) as page:
        yield page


def screenshot(target: Page | Locator, name: str) -> Path:
    """Save a screenshot under test-outputs/ui-custom-run/ and return its path.

    A page is shot as the viewport shows it; a locator (the form, say) whole.
    """
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / name
    target.screenshot(path=str(path))
    return path


def parameter_label(title: str) -> re.Pattern[str]:
    """The accessible name the form gives a flow parameter: its title, maybe ``(Optional)``."""
    return re.compile(rf"^{re.escape(title)}( \(Optional\))?$")


def open_custom_run_form(page: Page, server: PrefectServer, deployment: MintDeployment) -> None:
    """Navigate like a person: UI home -> Deployments -> the deployment -> Run -> Custom run."""
    page.goto(server.ui_url)
    page.get_by_role("link", name="Deployments", exact=True).click()
    # The flow is called like the deployment: take the link to the deployment page.
    page.get_by_role("link", name=deployment.name, exact=True).and_(
        page.locator('a[href*="/deployments/deployment/"]')
    ).click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Custom run").click()
    expect(page.get_by_role("heading", name="Parameters")).to_be_visible()


def fill_text(page: Page, name: str, value: str) -> None:
    """Fill a ``str`` or ``UUID`` parameter."""
    page.get_by_role("textbox", name=parameter_label(name)).fill(value)


def fill_int(page: Page, name: str, value: int) -> None:
    """Fill an ``int`` parameter (rendered as a number input)."""
    page.get_by_role("spinbutton", name=parameter_label(name)).fill(str(value))


def pick_block(page: Page, title: str, block_name: str) -> None:
    """Pick a saved block in a block-typed parameter's picker (the form's block select)."""
    field = page.locator("div.group").filter(has=page.get_by_text(parameter_label(title)))
    field.get_by_role("button", name="Select a block").click()
    page.get_by_role("option", name=block_name).click()
    expect(field.get_by_role("button", name="Select a block")).to_contain_text(block_name)


def fill_mint_form(page: Page, fleet: str, target: str, expires_in: int) -> None:
    """Fill the mint-token parameters: the fleet (picked), the target's name, the expiry."""
    pick_block(page, "Fleet", fleet)
    fill_text(page, "Target", target)
    fill_int(page, "Expires in (seconds)", expires_in)


@pytest.fixture(scope="module")
def ui_run(
    browser: Browser,
    prefect_server: PrefectServer,
    mint_deployment: MintDeployment,
    fleet_block: str,
    emulator: Any,
) -> UIRun:
    """Submit the Custom run form once and let a process worker run the flow."""
    provider = emulator.seed.providers[0]
    client = provider.clients[0]
    inputs = {"provider_id": str(provider.id), "client_id": str(client.id)}
    with loopback_page(browser) as page:
        open_custom_run_form(page, prefect_server, mint_deployment)
        fill_mint_form(page, fleet_block, TARGET, EXPIRES_IN)
        screenshot(page.get_by_role("main"), "custom-run-form.png")
        page.get_by_role("button", name="Submit", exact=True).click()
        # The UI confirms with a toast "<run name> scheduled to start now" + "View run".
        view_run = page.get_by_role("link", name="View run")
        expect(view_run).to_be_visible()
        href = view_run.get_attribute("href") or ""
    flow_run_id = href.rstrip("/").rsplit("/", 1)[-1]
    uuid.UUID(flow_run_id)  # the link names the new flow run
    worker_output = prefect_server.start_worker(mint_deployment.pool, run_once=True)
    flow_run = prefect_server.wait_for_flow_run(flow_run_id)
    if flow_run["state"]["type"] != "COMPLETED":  # nothing below can hold: say why now
        state = flow_run["state"]
        pytest.fail(
            f"the custom run ended {state['name']}: {state['message']}\n{worker_output[-4000:]}"
        )
    return UIRun(
        flow_run_id=flow_run_id,
        flow_run_name=flow_run["name"],
        audience=client.audience,
        issuer=provider.issuer(),
        **inputs,
    )


def read_secret_token(server: PrefectServer) -> Any:
    """Return the AccessToken the Secret block holds, read through our own sink."""
    from usegrant_flows.sinks import SecretBlockSink

    return server.call(SecretBlockSink(secret_block_name=SECRET_BLOCK).read)


def test_custom_run_form_sends_the_picked_fleet_by_reference_and_names_only(
    prefect_server: PrefectServer, ui_run: UIRun, fleet_block: str
) -> None:
    [document] = prefect_server.api(
        "POST",
        "/block_documents/filter",
        json={"block_documents": {"name": {"any_": [fleet_block]}}, "limit": 1},
    )
    parameters = prefect_server.api("GET", f"/flow_runs/{ui_run.flow_run_id}")["parameters"]
    assert parameters == {
        "fleet": {"$ref": {"block_document_id": document["id"]}},
        "target": TARGET,
        "expires_in": EXPIRES_IN,
    }


def test_custom_run_form_shows_readable_titles_and_no_none_switch(
    page: Page, prefect_server: PrefectServer, mint_deployment: MintDeployment
) -> None:
    open_custom_run_form(page, prefect_server, mint_deployment)
    main = page.get_by_role("main")
    for title in ("Fleet", "Target", "Expires in (seconds)"):
        expect(main.get_by_text(parameter_label(title)).first).to_be_visible()
    expect(main.get_by_role("button", name="Select a block")).to_have_count(1)
    expect(main.get_by_role("tab", name="None", exact=True)).to_have_count(0)
    for raw in ("provider_id", "file_path", "credentials_block", "secret_block_name"):
        expect(main.get_by_text(raw, exact=True)).to_have_count(0)


def test_ui_shows_the_run_completed_with_an_artifact_naming_the_token_not_holding_it(
    page: Page, prefect_server: PrefectServer, ui_run: UIRun
) -> None:
    token = read_secret_token(prefect_server)
    page.goto(prefect_server.ui_url)  # the default UI, then its own links
    page.get_by_role("link", name="Runs", exact=True).click()
    page.get_by_role("link", name=ui_run.flow_run_name, exact=True).click()
    main = page.get_by_role("main")
    expect(main.get_by_text("Completed", exact=True).first).to_be_visible()
    # The run's logs (the page's first tab) name the token by its fingerprint only.
    expect(page.get_by_role("log").get_by_text(token.fingerprint).first).to_be_visible()
    secret = token.access_token.get_secret_value()
    assert secret not in page.content()
    page.get_by_role("tab", name="Artifacts").click()
    card = page.get_by_role("link").filter(has=page.get_by_role("heading", name=ARTIFACT_KEY))
    expect(card).to_be_visible()
    page.get_by_role("radio", name="List view").click()  # shows the artifact's description
    expect(card.get_by_text("UseGrant mint-token run")).to_be_visible()
    screenshot(page, "run-completed.png")
    card.click()
    expect(main.get_by_text(token.fingerprint).first).to_be_visible()
    screenshot(page, "artifact.png")
    assert secret not in page.content()


def test_custom_run_writes_a_token_that_verifies_against_the_emulator_jwks(
    prefect_server: PrefectServer, ui_run: UIRun, emulator: Any
) -> None:
    from usegrant_flows.api.verify import verify_token

    token = read_secret_token(prefect_server)
    claims = verify_token(token, emulator.jwks_url, audience=ui_run.audience, issuer=ui_run.issuer)
    assert claims["exp"] - claims["iat"] == EXPIRES_IN


def test_custom_run_form_refuses_an_expiry_over_48_hours(
    page: Page,
    prefect_server: PrefectServer,
    mint_deployment: MintDeployment,
    fleet_block: str,
) -> None:
    open_custom_run_form(page, prefect_server, mint_deployment)
    fill_mint_form(page, fleet_block, TARGET, 172_801)
    sent: list[str] = []

    def record(request: Request) -> None:
        if request.method != "GET":
            sent.append(request.url)

    page.on("request", record)
    page.get_by_role("button", name="Submit", exact=True).click()
    expiry = page.get_by_role("spinbutton", name=parameter_label("Expires in (seconds)"))
    # The schema's maximum (172800) becomes the input's max: the browser blocks the
    # submit and shows its validation bubble with this message next to the field.
    message = expiry.evaluate("input => input.validationMessage")
    screenshot(page.get_by_role("main"), "expiry-refused.png")
    assert message == "Value must be less than or equal to 172800."
    assert expiry.evaluate("input => input.matches(':invalid')")
    assert not [url for url in sent if "create_flow_run" in url]
    expect(page.get_by_role("link", name="View run")).to_have_count(0)
