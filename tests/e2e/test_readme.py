"""The README, followed top to bottom by a newcomer: every command block runs.

Each ```bash block, and each ```python block (fed to ``python -``), runs in order in one
bash session (``set -euo pipefail``), in an empty folder, with a fresh ``HOME`` and
``PREFECT_HOME`` and no outer ``PREFECT_*``/``USEGRANT_*`` variable. The README's fixed
ports (8787 for the emulator, 4200 for the Prefect server) become free loopback ports.
Servers the README starts in the background are stopped at the end (``prefect server
stop``, then the session's process group), and the whole run is bounded.

A block marked ``<!-- readme-test: skip (why) -->`` is not run; only the two blocks this
test cannot run itself may carry the mark: the two commands (``scripts/test.sh`` is what
runs this test; the demo has its own tests) and the install (the ``wheel_env`` fixture
does it).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import REPO_ROOT, free_port

README = REPO_ROOT / "README.md"
BLOCK = re.compile(r"(?:(<!-- readme-test: skip[^>]*-->)\n)?```(bash|python)\n(.*?)```", re.S)
RUN_TIMEOUT = 1200  # seconds: server start, deploy and one rotation on a loaded machine


def blocks() -> list[tuple[bool, str, str]]:
    """``(skipped, language, text)`` of every fenced bash or python block, in order."""
    return [
        (bool(mark), language, text)
        for mark, language, text in BLOCK.findall(README.read_text(encoding="utf-8"))
    ]


def script(emulator_port: int, server_port: int) -> str:
    lines = ["set -euo pipefail"]
    for skipped, language, text in blocks():
        if skipped:
            continue
        if language == "python":
            text = f"python - <<'PYTHON_BLOCK'\n{text}PYTHON_BLOCK\n"
        lines.append(text)
    body = "\n".join(lines)
    return body.replace("8787", str(emulator_port)).replace("4200", str(server_port))


def test_only_the_two_commands_and_the_install_are_not_run_here() -> None:
    skipped = [text for was_skipped, _, text in blocks() if was_skipped]
    assert len(skipped) == 2
    assert "scripts/test.sh" in skipped[0] and "scripts/demo.sh" in skipped[0]
    assert "pip wheel" in skipped[1]
    # The README's test command is the one CI runs.
    assert "scripts/test.sh" in (REPO_ROOT / ".ci" / "run").read_text()


def test_every_readme_command_block_runs_from_an_empty_folder(tmp_path: Path) -> None:
    folder, home = tmp_path / "newcomer", tmp_path / "home"
    folder.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "USEGRANT_"))}
    env.update(
        HOME=str(home),
        PREFECT_HOME=str(home / ".prefect"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )
    server_port = free_port()
    (tmp_path / "readme.sh").write_text(script(free_port(), server_port))
    log = tmp_path / "readme.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["bash", str(tmp_path / "readme.sh")],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=RUN_TIMEOUT)
        finally:
            stop = {**env, "PREFECT_API_URL": f"http://127.0.0.1:{server_port}/api"}
            subprocess.run(
                [sys.executable, "-m", "prefect", "server", "stop"],
                cwd=folder, env=stop, capture_output=True, timeout=120, check=False,
            )  # fmt: skip
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
    output = log.read_text(errors="replace")
    assert returncode == 0, output[-6000:]
    for name in ("aws.jwt", "gcp.json", "azure.jwt"):
        path = folder / "tokens" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, output[-3000:]
    assert (folder / "my-aws.jwt").read_text().count(".") == 2
    assert "Traceback" not in output, output[-6000:]
