"""What the suite does when something it needs is missing: skip on a developer's
machine, fail on CI, where nothing may be skipped.

CI is told by the ``CI`` variable that CI services set (GitHub Actions, GitLab,
Buildkite, ``.ci/run`` …): any value but empty, ``0``, ``false`` or ``no``.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(why: str) -> NoReturn:
    """Skip the test for ``why``, or fail it on CI."""
    if on_ci():
        pytest.fail(f"{why} (on CI every test must run)")
    pytest.skip(why)
