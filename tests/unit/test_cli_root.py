"""The root of the command line: help, version, user-facing errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from voltloop.orchestrator.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from voltloop.orchestrator.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_every_design_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for command in (
        "init",
        "dry-run",
        "run",
        "resume",
        "status",
        "report",
        "db",
        "sim",
        "instruments",
        "bench",
    ):
        assert command in result.stdout


def test_unknown_benchmark_is_a_clear_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "no-such-benchmark"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown benchmark 'no-such-benchmark'" in err
    assert "Traceback" not in err


def test_unknown_option_is_a_usage_error() -> None:
    result = run_cli("bench", "--no-such-option")
    assert result.returncode == 2
    assert "No such option" in result.stderr


def test_known_numerical_notices_are_quiet_and_others_are_not() -> None:
    import warnings

    from voltloop.orchestrator.cli import _quiet_numerical_notices

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        _quiet_numerical_notices()
        for message, module in [
            ("A not p.d., added jitter of 1.0e-08 to the diagonal", "linear_operator.utils"),
            ("Objective did not converge. You might want to increase", "sklearn.linear_model"),
            ("A not p.d., added jitter of 1.0e-08 to the diagonal", "voltloop.surrogates"),
            ("something a user should see", "linear_operator.utils"),
        ]:
            warnings.warn_explicit(message, RuntimeWarning, "f.py", 1, module=module)
    assert [str(w.message)[:20] for w in seen] == ["A not p.d., added ji", "something a user sho"]


def test_an_error_naming_a_long_path_is_printed_on_one_line(tmp_path) -> None:
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "campaign.toml"
    result = subprocess.run(
        [sys.executable, "-c", "from voltloop.orchestrator.cli import main; main()"]
        + ["dry-run", str(deep), "--no-prefect", "--db", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "80"},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert str(deep) in result.stderr  # not broken across lines at the terminal's width


def test_large_freed_blocks_are_kept_for_reuse_on_glibc() -> None:
    """Decision 0084: the entry point raises glibc's mmap and trim thresholds."""
    import platform

    from voltloop.orchestrator.cli.memory import keep_freed_memory

    applied = keep_freed_memory()
    assert applied is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
