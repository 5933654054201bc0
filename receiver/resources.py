"""Where the shipped data lives: `migrations/` and `config/` of the checkout, or their copies inside an
installed wheel (`receiver._migrations`, `receiver._defaults`, mapped in pyproject.toml)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def _resource_dir(package: str, checkout_dir: str) -> Path:
    local = _CHECKOUT / checkout_dir
    if local.is_dir():
        return local
    try:
        return Path(str(importlib.resources.files(package)))
    except ModuleNotFoundError:
        return local


def migrations_dir() -> Path:
    return _resource_dir("receiver._migrations", "migrations")


def defaults_dir() -> Path:
    return _resource_dir("receiver._defaults", "config")
