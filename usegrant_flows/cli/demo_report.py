"""The demo's report: a table of the first run whose ids stay whole at 80 columns."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

__all__ = ["print_first_run"]


def print_first_run(console: Console, rows: list[tuple[str, str, str, str, str, str]]) -> None:
    """Print the first run's table, every id whole at 80 columns.

    The short columns (target, action, fingerprint, expiry, checks: about 60 columns)
    form the table; each audience, which can be longer than a line (a GCP workload
    identity audience is about 100 characters), follows on its own line, never cut.

    Args:
        console: Where to print.
        rows: ``(target, action, fingerprint, expires, checks, audience)`` per target.

    Example:
        >>> import io
        >>> console = Console(width=80, record=True, file=io.StringIO())
        >>> audience = "//iam.googleapis.com/projects/123456789/locations/global/" + "x" * 40
        >>> print_first_run(console, [("demo-gcp", "minted", "0123456789ab",
        ...                            "12:00:00", "ok / ok", audience)])
        >>> text = console.export_text()
        >>> audience in text and "0123456789ab" in text
        True
    """
    table = Table(title="First run", box=box.SIMPLE)
    for name in ("target", "action", "fingerprint", "expires UTC", "file/secret"):
        table.add_column(name, no_wrap=True)
    for row in rows:
        table.add_row(*row[:5])
    console.print(table)
    console.print("Audiences:")
    for row in rows:
        console.print(f"  {row[0]}: {row[5]}", soft_wrap=True, markup=False)
