"""The package's layers: imports only point down, no circles, small modules, no Prefect in api/.

The layer map is ``docs/architecture.md``; this test is what keeps it true.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "usegrant_flows"

#: Lowest first. A module may import from its own layer or below, never above.
LAYERS: list[tuple[str, ...]] = [
    ("usegrant_flows", "usegrant_flows._version", "usegrant_flows._links"),
    ("usegrant_flows.api", "usegrant_flows.errors", "usegrant_flows.verify"),
    ("usegrant_flows.emulator", "usegrant_flows.quota"),
    (
        "usegrant_flows.loading",
        "usegrant_flows._aws_names",
        "usegrant_flows._aws_client",
        "usegrant_flows.aws_exchange",
        "usegrant_flows.credentials",
        "usegrant_flows.client_pool",
        "usegrant_flows.tasks",
        "usegrant_flows.sinks",
    ),
    # blocks imports every block class, the fleet block of the rotation layer included.
    ("usegrant_flows.rotation", "usegrant_flows.blocks"),
    ("usegrant_flows.cli",),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULE_NAMES: set[str] = set()


def layer_of(module: str) -> int:
    best = (-1, -1)  # (length of the matching prefix, layer)
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or module.startswith(prefix + ".")
            if (
                inside
                and len(prefix) > best[0]
                and (prefix != "usegrant_flows" or module == prefix)
            ):
                best = (len(prefix), index)
    assert best[1] >= 0, f"{module} is in no layer: add it to LAYERS and docs/architecture.md"
    return best[1]


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> set[str]:
    """Every usegrant_flows module imported at run time (function bodies included)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("usegrant_flows"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("usegrant_flows"):
            for alias in node.names:
                # "from usegrant_flows.api import retry" imports the module api.retry
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULE_NAMES else str(node.module))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
MODULE_NAMES.update(MODULES)
GRAPH = {name: imports_of(path) - {name} for name, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_from_its_own_layer_or_below(module: str) -> None:
    mine = layer_of(module)
    upward = sorted(dep for dep in GRAPH[module] if layer_of(dep) > mine)
    assert upward == [], f"{module} (layer {mine}) imports from a higher layer: {upward}"


def test_the_aws_exchange_reaches_into_no_sink_module_for_its_aws_client() -> None:
    assert "usegrant_flows.sinks._aws" not in GRAPH["usegrant_flows.aws_exchange"]
    assert "usegrant_flows._aws_client" in GRAPH["usegrant_flows.aws_exchange"]
    assert "usegrant_flows._aws_client" in GRAPH["usegrant_flows.sinks._aws"]


def test_no_import_circle_is_left() -> None:
    try:
        order = list(TopologicalSorter(GRAPH).static_order())
    except CycleError as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(f"import circle: {' -> '.join(exc.args[1])}")
    assert set(MODULES) <= set(order)


def test_the_circle_check_can_fail() -> None:
    with pytest.raises(CycleError):
        list(TopologicalSorter({"a": {"b"}, "b": {"a"}}).static_order())


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_400_lines(module: str) -> None:
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= 400, f"{module} has {lines} lines: split it by idea"


def test_the_api_package_imports_no_prefect_in_a_fresh_interpreter() -> None:
    api_modules = sorted(m for m in MODULES if m.startswith("usegrant_flows.api"))
    code = (
        "import importlib, json, sys\n"
        f"for name in {api_modules!r}: importlib.import_module(name)\n"
        "import usegrant_flows.errors, usegrant_flows.verify\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout) == []
    assert len(api_modules) >= 8


def test_importing_a_subpackage_does_not_import_prefect() -> None:
    code = (
        "import json, sys\n"
        "import usegrant_flows, usegrant_flows.api.client, usegrant_flows.quota.budget\n"
        "print(json.dumps('prefect' in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout) is False
