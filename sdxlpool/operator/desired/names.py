"""Names of a pool's children that Kubernetes accepts (label values: :mod:`sdxlpool.api.labels`).

Pure functions of strings. A child is named ``<pool>-<suffix>`` (``demo-a100``,
``demo-workers``) whenever that is already a valid DNS-1035 label (lower-case letters, digits and
``-``, starting with a letter, at most 63 characters: the strictest rule among the kinds a pool
creates, Services). Otherwise the name is made valid, and unique, by:

1. sanitising: lower-case; every other character (``.`` and ``+`` of MIG profiles, ``.`` of
   pool names that are DNS subdomains) becomes ``-``; runs of ``-`` collapse; a leading
   non-letter gets an ``x-`` prefix;
2. cutting to 54 characters, and
3. appending ``-`` and 8 hex digits of the SHA-256 of the *unsanitised* ``<pool>-<suffix>``.

The hash is added whenever step 1 or 2 changed anything, not only when truncating: pools
``a.b`` and ``a-b`` may live in one namespace, and without it both would own ``a-b-workers``.
So ``demo-a100-40gb-mig-1g.5gb`` becomes ``demo-a100-40gb-mig-1g-5gb-<hash>``, stable across
runs and releases (it depends only on the two strings).
"""

from __future__ import annotations

import re

from sdxlpool.api.labels import DIGEST_CHARS, short_digest

__all__ = ["MAX_NAME", "child_name", "is_dns_label"]

MAX_NAME = 63
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def is_dns_label(text: str) -> bool:
    """True for a DNS-1035 label: what Services, and so every child here, may be named."""
    return len(text) <= MAX_NAME and _DNS_1035.fullmatch(text) is not None


def child_name(pool: str, suffix: str) -> str:
    """``<pool>-<suffix>`` as a valid, unique DNS-1035 label of at most 63 characters."""
    wanted = f"{pool}-{suffix}"
    if is_dns_label(wanted):
        return wanted
    clean = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", wanted.lower())).strip("-")
    if not clean[:1].isalpha():
        clean = f"x-{clean}"
    head = clean[: MAX_NAME - DIGEST_CHARS - 1].rstrip("-")
    return f"{head}-{short_digest(wanted)}"
