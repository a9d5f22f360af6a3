"""The worker's styles.csv (`--styles FILE`): read at start, read again whenever the file changes.

A1111 reads its styles.csv at start and when the user saves a style; here the file is the only
source, so it is stat-ed on use and re-read when its modification time or size changed (a stat
per request is microseconds). A missing file means no styles, as in A1111, and is re-checked the
same way; an unreadable or malformed file keeps the styles last read, with a warning in the log.
The merging itself is `sdxlpool.prompts.styles` (pure).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sdxlpool.prompts import Style, parse_styles_csv

__all__ = ["StyleFile"]

log = logging.getLogger(__name__)


class StyleFile:
    def __init__(self, path: Path | None) -> None:
        self.path = path.expanduser() if path is not None else None
        self._stamp: tuple[int, int] | None = None
        self._styles: dict[str, Style] = {}
        self._lock = threading.Lock()
        if self.path is not None and not self.path.is_file():
            log.warning("--styles %s: no such file (yet): no styles until it appears", self.path)
        self.current()

    def current(self) -> dict[str, Style]:
        """The styles by name, in file order, as the file is now."""
        if self.path is None:
            return {}
        try:
            stat = self.path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._styles = self._read() if stamp is not None else {}
                self._stamp = stamp
            return self._styles

    def _read(self) -> dict[str, Style]:
        assert self.path is not None
        try:
            styles = parse_styles_csv(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.warning("--styles %s: not read, keeping the %d styles read before: %s", self.path,
                        len(self._styles), exc)
            return self._styles
        log.info("styles: %d read from %s", len(styles), self.path)
        return styles
