"""Without PostgreSQL the postgres tests skip locally and fail in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TARGET = "tests/integration/db/test_leases.py::test_bad_ttl_and_empty_names_are_refused"


def _run_without_postgres(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "VOLTLOOP_TEST_PG_URL")}
    env["VOLTLOOP_PG_BINDIR"] = str(tmp_path)  # a directory without initdb
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", TARGET],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_missing_postgres_fails_under_ci_and_skips_otherwise(tmp_path: Path) -> None:
    in_ci = _run_without_postgres(tmp_path, ci=True)
    assert in_ci.returncode == 1, in_ci.stdout
    assert "PostgreSQL is required when CI is set" in in_ci.stdout
    assert "1 passed" in in_ci.stdout  # the SQLite variant still ran
    local = _run_without_postgres(tmp_path, ci=False)
    assert local.returncode == 0, local.stdout
    assert "1 passed, 1 skipped" in local.stdout and "PostgreSQL not available" in local.stdout
