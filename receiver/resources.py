"""Where the shipped data lives: `migrations/` and `config/` of the checkout, or their copies inside an
installed wheel (`receiver/_migrations`, `receiver/_defaults`, mapped in pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent


def _resource_dir(installed_name: str, checkout_name: str) -> Path:
    local = _CHECKOUT / checkout_name
    if (local / ".").is_dir() and (_CHECKOUT / "pyproject.toml").exists():
        return local
    return _PACKAGE / installed_name


def migrations_dir() -> Path:
    return _resource_dir("_migrations", "migrations")


def defaults_dir() -> Path:
    return _resource_dir("_defaults", "config")
