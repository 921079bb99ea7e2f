"""Finds the command extensions: every module under ``cogs/`` that defines ``setup``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from types import ModuleType


def walk_extensions(package: str = "cogs") -> Iterator[str]:
    """Yield the dotted names of the extension modules below ``package``, sorted."""
    module: ModuleType = importlib.import_module(package)
    names = sorted(
        info.name
        for info in pkgutil.walk_packages(module.__path__, f"{package}.")
        if not info.name.rsplit(".", 1)[-1].startswith("_")
    )
    for name in names:
        candidate = importlib.import_module(name)
        if inspect.isfunction(getattr(candidate, "setup", None)):
            yield name
