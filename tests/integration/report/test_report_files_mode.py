"""A written report gets the mode a normally created file would get (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat

from voltloop.orchestrator.report import _atomic_write


def test_report_file_mode_follows_umask(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        target = tmp_path / "report.html"
        _atomic_write(target, "<html></html>")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert target.read_text() == "<html></html>"
