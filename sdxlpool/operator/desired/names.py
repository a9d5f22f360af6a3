"""Names of a pool's children, and label values, that Kubernetes accepts.

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

import hashlib
import re

__all__ = ["MAX_NAME", "child_name", "label_value", "is_dns_label"]

MAX_NAME = 63
_HASH_CHARS = 8
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def is_dns_label(text: str) -> bool:
    """True for a DNS-1035 label: what Services, and so every child here, may be named."""
    return len(text) <= MAX_NAME and _DNS_1035.fullmatch(text) is not None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_CHARS]


def child_name(pool: str, suffix: str) -> str:
    """``<pool>-<suffix>`` as a valid, unique DNS-1035 label of at most 63 characters."""
    wanted = f"{pool}-{suffix}"
    if is_dns_label(wanted):
        return wanted
    clean = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", wanted.lower())).strip("-")
    if not clean[:1].isalpha():
        clean = f"x-{clean}"
    head = clean[: MAX_NAME - _HASH_CHARS - 1].rstrip("-")
    return f"{head}-{_digest(wanted)}"


def label_value(text: str) -> str:
    """``text`` as a label value: ``+`` becomes ``_``; over 63 characters, cut and hashed.

    Pool names (DNS subdomains, up to 253 characters) and GPU slugs are the inputs; both only
    use characters a label value allows, except ``+`` in MIG profiles (``1g.10gb+me``), which
    no slug otherwise contains, so the ``_`` keeps values distinct.
    """
    value = text.replace("+", "_")
    if len(value) <= MAX_NAME and _LABEL_VALUE.fullmatch(value):
        return value
    clean = re.sub(r"[^A-Za-z0-9_.-]", "-", value)
    head = clean[: MAX_NAME - _HASH_CHARS - 1].strip("-_.")
    return f"{head}-{_digest(text)}" if head else _digest(text)
