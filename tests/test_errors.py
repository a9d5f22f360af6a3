"""One exception tree: every exception class sdxlpool defines joins `sdxlpool.errors` and is drawn,
by name, in that module's docstring (so callers know which level to catch, as in httpx/_exceptions.py)."""

from __future__ import annotations

import importlib
import pkgutil
import re
from types import ModuleType

import sdxlpool
from sdxlpool import errors

# Packages only the test extra installs: a module that needs one is skipped, not failed.
TEST_ONLY_PACKAGES = {"kmock", "kubernetes_validate", "jsonschema", "psutil", "playwright", "schemathesis"}

# Outside the tree for a reason, named here; an entry that stops applying fails the test, so the
# list cannot rot. gateway/forward.py and gateway/_bulk.py are being rewritten (issue 12's failover
# seam): their classes re-parent to UpstreamError there.
ALLOWED_OUTSIDE: dict[str, str] = {}  # class name -> why it cannot join the tree (none today)


def _modules() -> list[ModuleType]:
    found = []
    for info in pkgutil.walk_packages(sdxlpool.__path__, "sdxlpool."):
        if info.name.endswith(".__main__"):  # runs a command when imported
            continue
        try:
            found.append(importlib.import_module(info.name))
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in TEST_ONLY_PACKAGES:
                raise
    return found


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined (not just imported) in a module of sdxlpool, by qualified name."""
    return {
        f"{module.__name__}.{value.__qualname__}": value
        for module in _modules()
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == module.__name__
    }


def test_the_walk_finds_the_classes_it_is_meant_to() -> None:
    classes = _exception_classes()
    for name in ("sdxlpool.errors.InvalidRequest", "sdxlpool._kube.KubeError", "sdxlpool.akash.sdl.AkashError",
                 "sdxlpool.sim._engine.SimulatedDeviceError", "sdxlpool.client._ws.GatewayTimeout"):
        assert name in classes


def test_every_exception_class_joins_the_tree() -> None:
    outside = sorted(name for name, cls in _exception_classes().items()
                     if not issubclass(cls, errors.SDXLPoolError) and name not in ALLOWED_OUTSIDE)
    assert not outside, f"derive these from a class of sdxlpool.errors (the right branch): {outside}"


def test_the_allow_list_holds_only_classes_still_outside() -> None:
    classes = _exception_classes()
    stale = sorted(name for name in ALLOWED_OUTSIDE
                   if name not in classes or issubclass(classes[name], errors.SDXLPoolError))
    assert not stale, f"remove from ALLOWED_OUTSIDE (gone, or in the tree now): {stale}"


def test_every_exception_class_is_drawn_in_the_tree() -> None:
    drawn = set(re.findall(r"\w+", errors.__doc__ or ""))
    missing = sorted(name for name, cls in _exception_classes().items() if cls.__name__ not in drawn)
    assert not missing, f"add these to the tree in sdxlpool/errors.py's docstring: {missing}"


def test_classes_keep_the_builtin_bases_their_callers_catch() -> None:
    """`except ValueError` (pydantic validators, callers of the SDL export), a worker's 500 for a device
    failure, FastAPI's pass-through of HTTPException: joining the tree took none of these away."""
    from starlette.exceptions import HTTPException

    from sdxlpool._limits import _Rejected
    from sdxlpool.akash.sdl import AkashError
    from sdxlpool.api.spec import PoolSpecError
    from sdxlpool.sim._engine import SimulatedDeviceError

    assert issubclass(AkashError, errors.ConfigError) and issubclass(AkashError, ValueError)
    assert issubclass(PoolSpecError, errors.ConfigError) and issubclass(PoolSpecError, ValueError)
    assert issubclass(SimulatedDeviceError, RuntimeError) and not issubclass(SimulatedDeviceError, errors.RequestError)
    assert issubclass(_Rejected, HTTPException) and issubclass(_Rejected, errors.RequestError)
    assert _Rejected(413, "body_too_large", "too big").status == 413
