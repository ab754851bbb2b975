"""``usegrant-flows init [FOLDER]``: what ``prefect deploy`` needs, from the package alone.

Writes ``prefect.yaml`` (the package's deployments: ``rotate-tokens``,
``rotate-tokens-on-host``, ``mint-token`` on the ``usegrant-process`` pool) and
``fleet.yaml`` (a first fleet for the emulator) into FOLDER, from the installed
package's data: no checkout is needed. An existing file is kept unless ``--force``.

``prefect.yaml`` has one source, the repository's own: the wheel carries it as
``usegrant_flows/deploy/prefect.yaml`` (hatch ``force-include``); from a checkout
(editable install) it is read at the repository root.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from usegrant_flows.api.errors import ConfigurationError

__all__ = ["FILES", "init", "packaged_text"]

#: What ``init`` writes, in order.
FILES = ("prefect.yaml", "fleet.yaml")

_NEXT_STEPS = """\
Next, with PREFECT_API_URL pointing at your Prefect server, in {folder}:
  prefect work-pool create usegrant-process --type process --overwrite
  prefect block register -m usegrant_flows
  usegrant-flows credentials save usegrant --base-url <UseGrant API URL>
  usegrant-flows fleet push fleet.yaml --name usegrant --overwrite
  prefect --no-prompt deploy --all
  prefect worker start --pool usegrant-process
"""


def packaged_text(name: str) -> str:
    """Return the text of one of :data:`FILES` as the installed package holds it.

    Args:
        name: ``"prefect.yaml"`` or ``"fleet.yaml"``.

    Raises:
        ConfigurationError: The package holds no such file (a broken install).

    Example:
        >>> "rotate-tokens" in packaged_text("prefect.yaml")
        True
    """
    if name not in FILES:
        raise ConfigurationError(f"name must be one of {', '.join(FILES)}, got {name!r}")
    data = resources.files("usegrant_flows") / "deploy" / name
    if data.is_file():
        return data.read_text(encoding="utf-8")
    # An editable install from a checkout: the repository root holds prefect.yaml.
    root = Path(__file__).resolve().parents[2] / name
    if name == "prefect.yaml" and root.is_file():
        return root.read_text(encoding="utf-8")
    raise ConfigurationError(f"this install of usegrant-flows has no {name}: reinstall it")


def init(folder: Path = Path("."), /, *, force: bool = False) -> int:
    """Write prefect.yaml and an example fleet.yaml into FOLDER (default: here).

    Args:
        folder: Where to write; created when missing.
        force: Replace files that already exist.
    """
    texts = {name: packaged_text(name) for name in FILES}
    existing = [name for name in FILES if (folder / name).exists()]
    if existing and not force:
        raise ConfigurationError(
            f"{', '.join(existing)} already in {folder}: keep them, or pass --force"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    print(f"Wrote {' and '.join(FILES)} in {folder.resolve()}.", file=sys.stderr)
    print(_NEXT_STEPS.format(folder=folder.resolve()), file=sys.stderr, end="")
    return 0
