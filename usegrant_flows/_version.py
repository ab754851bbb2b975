"""The installed version of usegrant-flows."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("usegrant-flows")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"
