"""Permission bits of a token file, shared by the file sink and fleet files (no Prefect).

``FileMode`` is an ``int`` that also accepts octal strings (``"0600"``) and must grant
the owner read and nothing wider than :data:`WIDEST_MODE` (``rw-r-----``).

Example:
    >>> from pydantic import TypeAdapter
    >>> TypeAdapter(FileMode).validate_python("0640") == 0o640
    True
"""

from __future__ import annotations

import stat
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

__all__ = ["WIDEST_MODE", "FileMode"]

#: The widest mode a token file may have: owner read/write, group read.
WIDEST_MODE = 0o640


def _parse_octal(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value, 8)
        except ValueError:
            raise ValueError(f"mode must be octal digits such as '0600', got {value!r}") from None
    return value


def _check_bits(value: int) -> int:
    if value & ~WIDEST_MODE or not value & stat.S_IRUSR:
        raise ValueError(
            f"mode must include owner read and grant at most 0640 (rw-r-----), got {value:#o}"
        )
    return value


FileMode = Annotated[int, BeforeValidator(_parse_octal), AfterValidator(_check_bits)]
