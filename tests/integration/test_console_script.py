"""The installed ``voltloop`` console script, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("voltloop")


def test_console_script_reports_version() -> None:
    result = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"voltloop {version('voltloop')}"


def test_bench_listing_is_one_json_object() -> None:
    result = subprocess.run(
        [str(SCRIPT), "bench", "--json"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert isinstance(listing["benchmarks"], dict)
