"""The release number, in one place: pyproject.toml reads it from here (setuptools'
``attr:``), so no command pays for ``importlib.metadata`` (30 ms of every start) to
learn it."""

VERSION = "0.1.0"
