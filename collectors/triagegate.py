"""What every triage collector asks first: does it run in this profile (and if not, one
closing-box row saying so), and the host's package database (dpkg's or RPM's), read once
a run and shared (``ctx.shared["pkgdb"]``) by whichever triage collector needs it first."""

from __future__ import annotations

from collections.abc import Callable

from . import dpkg, rpmdb
from .context import CollectContext
from .logprofile import load_profile
from .pkgdb import Database
from .triageprofile import DEFAULT_ON, TriageSettings, runs


def triage_settings(ctx: CollectContext, name: str, label: str) -> TriageSettings | None:
    """The profile's ``[triage]`` settings when collector ``name`` runs, else None (and
    a closing-box row ``label``: not in this profile)."""
    profile = ctx.options.log_profile or load_profile(None)
    if runs(profile.triage, name, ctx.options.only):
        return profile.triage
    hint = "" if name in DEFAULT_ON else " (--profile standard)"
    ctx.summary.add(label, f"not in profile {profile.name}{hint}")
    return None


def runs_in(ctx: CollectContext, name: str) -> bool:
    """Does triage collector ``name`` run in this run (its profile switch, or ``--only``)?"""
    profile = ctx.options.log_profile or load_profile(None)
    return runs(profile.triage, name, ctx.options.only)


def load_database(root: bytes) -> Database | None:
    """The host's package database, Debian's or RPM's, or None where it has neither."""
    return dpkg.load(root) or rpmdb.load(root)


def package_db(
    ctx: CollectContext, root: bytes, keep: Callable[[bytes], bool] | None = None
) -> Database | None:
    """The package database under ``root`` (None: neither dpkg nor RPM): the whole one,
    loaded once a run and shared; or, with ``keep`` and no whole one loaded yet, only the
    files ``keep`` accepts where the format allows it (dpkg; not shared), unless a
    collector that needs every file runs later in this run (``packages``,
    ``executables``): then the whole one, loaded once (a partial read costs a third of a
    whole one, for nothing). Two collectors running at once (``packages``
    alongside ``executables``) load it once: the second waits for the first's."""
    with ctx.lock:
        if "pkgdb" in ctx.shared:
            db: Database | None = ctx.shared["pkgdb"]
            return db
    if keep is not None and not (runs_in(ctx, "packages") or runs_in(ctx, "executables")):
        return dpkg.load(root, keep) or rpmdb.load(root)
    with ctx.lock:
        if "pkgdb" not in ctx.shared:
            ctx.shared["pkgdb"] = load_database(root)
        return package_db(ctx, root)
