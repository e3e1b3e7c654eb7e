"""Profiles are data, checked at load time: a broken one is a usage error (exit 2)
that names the file, the entry and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import preserve

from collectors.logprofile import LogSource, ProfileError, load_profile, parse_profile


def test_shipped_profiles_load_and_grow_in_scope() -> None:
    minimal, standard, full = (load_profile(n) for n in ("minimal", "standard", "full"))
    roots = [{s.root for s in p.sources} for p in (minimal, standard, full)]
    assert b"/var/log" in roots[0]
    assert roots[0] <= roots[1] < roots[2]
    assert b"/var/lib/docker/containers" in roots[2]
    assert load_profile(None).name == "standard"


def test_include_exclude_and_depth() -> None:
    minimal = load_profile("minimal").sources[0]
    assert minimal.selects(b"/var/log/auth.log.2.gz")
    assert minimal.selects(b"/var/log/journal/0123/system.journal~")
    assert not minimal.selects(b"/var/log/dpkg.log")
    src = LogSource(b"/srv", "t", include=("*.log",), exclude=("debug*",), max_depth=2)
    assert src.selects(b"/srv/a/b.log")
    assert not src.selects(b"/srv/a/b/c.log")  # too deep
    assert not src.selects(b"/srv/debug.log")
    assert not src.covers(b"/srvx/a.log")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"source": []}, "'version = 1' is required"),
        ({"version": 1, "sorce": []}, "unknown key 'sorce'"),
        ({"version": 1, "source": [{"root": "var/log", "description": "x"}]}, "absolute path"),
        ({"version": 1, "source": [{"root": "/var/*", "description": "x"}]}, "literal path"),
        ({"version": 1, "source": [{"root": "/var/log"}]}, "source #1: 'description'"),
        (
            {"version": 1, "source": [{"root": "/l", "description": "x", "include": "*.log"}]},
            "'include' must be a list",
        ),
        (
            {"version": 1, "source": [{"root": "/l", "description": "x", "max_depth": 0}]},
            "'max_depth'",
        ),
        ({"version": 1, "macos": {"unified_log": True, "last": "3 days"}}, "'last'"),
        ({"version": 1}, "nothing to collect"),
    ],
)
def test_invalid_profiles_are_rejected_with_a_reason(data: dict, message: str) -> None:
    with pytest.raises(ProfileError, match=message.replace("[", r"\[")):
        parse_profile("p.toml", data)


def test_cli_rejects_bad_profiles_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('version = 1\n[[source]]\nroot = "/var/log"\ndescription = "x"\nglob = 1\n')
    result = preserve("-o", tmp_path / "out", "--only", "logs", "--profile", bad)
    assert result.returncode == 2
    assert b"source #1: unknown key 'glob'" in result.stderr
    result = preserve("-o", tmp_path / "out", "--only", "logs", "--profile", "nosuch")
    assert result.returncode == 2
    assert b"unknown profile 'nosuch'" in result.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("version = = 1\n")
    result = preserve("-o", tmp_path / "out", "--only", "logs", "--profile", broken)
    assert result.returncode == 2 and b"not valid TOML" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_output_inside_a_profile_source_is_refused(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    profile = tmp_path / "p.toml"
    profile.write_text(f'version = 1\n[[source]]\nroot = "{logs}"\ndescription = "x"\n')
    result = preserve("-o", logs / "out", "--only", "logs", "--profile", profile)
    assert result.returncode == 2
    assert b"inside" in result.stderr


def test_watch_needs_a_positive_duration(tmp_path: Path) -> None:
    result = preserve("-o", tmp_path / "o", "--only", "logs", "--watch", "0")
    assert result.returncode == 2 and b"positive duration" in result.stderr
