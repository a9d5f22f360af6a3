"""Reading the files users hand to a command, with errors that name the file (`ConfigError`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdxlpool.errors import ConfigError

__all__ = ["read_text", "read_yaml"]


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path}: cannot read: {reason}") from None


def read_yaml(path: Path) -> Any:
    """One YAML document, parsed."""
    import yaml

    text = read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
