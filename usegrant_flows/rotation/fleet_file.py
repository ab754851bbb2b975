"""Reading fleet files strictly: YAML or JSON text into validated rotation targets.

A fleet file is read with bounds before anything is parsed (at most
:data:`MAX_FLEET_BYTES`, no FIFO or device), must be UTF-8, may not give a key twice in
one mapping, and may not expand (aliases included) past :data:`MAX_FLEET_NODES` values.
Every problem is one :class:`ConfigurationError` line naming the file and, where it
applies, the target, the field and the YAML line. The targets themselves are
:mod:`usegrant_flows.rotation.fleet`'s business.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from usegrant_flows.api.errors import ConfigurationError
from usegrant_flows.rotation.fleet import (
    Location,
    Locator,
    RotationTarget,
    at_line,
    parse_fleet,
)

__all__ = ["MAX_FLEET_BYTES", "MAX_FLEET_NODES", "load_fleet_file"]

#: Largest fleet file read, in bytes (a fleet of 10,000 targets is about 2 MiB of YAML).
MAX_FLEET_BYTES = 4 * 1024 * 1024
#: Most YAML nodes a fleet file may expand to, an alias counting once per use: anchors
#: and aliases must not turn a small file into an exponential amount of validation.
MAX_FLEET_NODES = 1_000_000


class _FleetFileError(Exception):
    """A problem in a fleet file's text, with the line it is on (1-based) if known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping.

    YAML says keys are unique, but PyYAML keeps the last value silently: a fleet file
    with two ``expires_in`` would run with whichever came last.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` overrides are what merge keys are for
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                earlier = first.get(key)
            except TypeError:
                continue  # unhashable: PyYAML reports it
            if earlier is not None:
                raise _FleetFileError(f"a key is given twice (first on line {earlier})", line)
            first[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Count the nodes ``node`` expands to, aliases once per use (memoized: linear time)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = 1  # a recursive alias counts once instead of looping
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(
            _expanded_size(key, sizes) + _expanded_size(value, sizes) for key, value in node.value
        )
    total = min(total, MAX_FLEET_NODES + 1)
    sizes[id(node)] = total
    return total


def _node_line(root: yaml.Node | None, where: Location) -> int | None:
    """Return the line of the deepest node of ``where`` found under ``root``."""
    node, line = root, None
    for part in where:
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
        elif isinstance(node, yaml.MappingNode):
            match = next(
                (v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part),
                None,
            )
            if match is None:
                continue  # a validator's own step (a union tag): try the next part
            node = match
        else:
            continue
        line = node.start_mark.line + 1
    return line


def _read_fleet_bytes(file: Path) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(file, flags)  # non-blocking: a FIFO must not hang the run
    except OSError as exc:
        raise _FleetFileError(exc.strerror or type(exc).__name__) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _FleetFileError("not a regular file")
        if info.st_size > MAX_FLEET_BYTES:
            raise _FleetFileError(f"larger than {MAX_FLEET_BYTES // (1024 * 1024)} MiB")
        chunks, size = [], 0
        while size <= MAX_FLEET_BYTES:
            chunk = os.read(fd, MAX_FLEET_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_FLEET_BYTES:
            raise _FleetFileError(f"larger than {MAX_FLEET_BYTES // (1024 * 1024)} MiB")
        return b"".join(chunks)
    except OSError as exc:
        raise _FleetFileError(exc.strerror or type(exc).__name__) from None
    finally:
        os.close(fd)


def _unique_json_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # The key is the file's content: named by where it is, never quoted.
            raise _FleetFileError("a key is given twice in one object")
        result[key] = value
    return result


def _parse_text(text: str, *, is_json: bool) -> tuple[Any, Locator | None]:
    """Parse a fleet file's text; return the document and a locator of its lines."""
    if is_json:
        try:
            return json.loads(text, object_pairs_hook=_unique_json_keys), None
        except json.JSONDecodeError as exc:
            raise _FleetFileError(f"not valid JSON: {exc.msg}", exc.lineno) from None
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        if _expanded_size(root, {}) > MAX_FLEET_NODES:
            raise _FleetFileError(
                f"expands to more than {MAX_FLEET_NODES:,} values (anchors and aliases)"
            )
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(str(exc.problem or exc.context or "unreadable").split())
        raise _FleetFileError(f"not valid YAML: {problem}", line) from None
    except yaml.YAMLError as exc:
        raise _FleetFileError(f"not valid YAML: {type(exc).__name__}") from None
    finally:
        loader.dispose()
    return data, lambda where: _node_line(root, where)


def load_fleet_file(path: str | Path) -> list[RotationTarget]:
    """Read a YAML or JSON fleet file (see the module docstring for the format).

    The file is read strictly: at most :data:`MAX_FLEET_BYTES`, UTF-8, no key given
    twice in one mapping, numbers that are numbers (``expires_in: yes`` is refused), and
    no more than :data:`MAX_FLEET_NODES` values once aliases are expanded.

    Args:
        path: The file; relative file-sink paths in it start at its folder.

    Returns:
        The targets, in file order.

    Raises:
        ConfigurationError: One line naming the file and, when it applies, the target,
            the field and the line: the file is missing, too large, not UTF-8, not
            YAML/JSON, nested too deeply, or a target is invalid.
    """
    file = Path(path).expanduser()
    try:
        raw = _read_fleet_bytes(file)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise _FleetFileError(
                f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})", line
            ) from None
        try:
            data, locate = _parse_text(text, is_json=file.suffix == ".json")
        except RecursionError:
            raise _FleetFileError("nested too deeply") from None
    except _FleetFileError as exc:
        raise ConfigurationError(f"fleet file {file}{at_line(exc.line)}: {exc}") from None
    try:
        return parse_fleet(data, base_dir=file.resolve().parent, locate=locate)
    except RecursionError:
        raise ConfigurationError(f"fleet file {file}: nested too deeply") from None
    except ConfigurationError as exc:
        raise ConfigurationError(f"fleet file {file}: {str(exc).removeprefix('fleet: ')}") from None
