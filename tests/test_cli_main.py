"""The program's entry point: cheap start-up and the single error boundary."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from cxrsearch.cli.main import app

HEAVY = ("torch", "transformers", "timm", "captum", "qdrant_client", "qdrant_edge", "pydicom", "matplotlib", "numpy")


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cxrsearch.cli.main import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"--help imported {out.stdout.strip()}"


def test_library_errors_become_one_line_and_exit_1(tmp_path) -> None:
    missing = tmp_path / "nope.tgz"
    result = CliRunner().invoke(app, ["data", "info", str(missing)])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {missing}: not found"]
    assert "Traceback" not in result.output


def test_debug_lets_the_traceback_through(tmp_path) -> None:
    result = CliRunner().invoke(app, ["--debug", "data", "info", str(tmp_path / "nope.tgz")])
    assert result.exit_code != 0
    assert result.exception is not None and type(result.exception).__name__ == "ReportError"


def test_usage_errors_keep_exit_status_2() -> None:
    result = CliRunner().invoke(app, ["data", "info", "--no-such-option"])
    assert result.exit_code == 2


def test_debug_does_not_leak_into_the_next_invocation(tmp_path) -> None:
    runner = CliRunner()
    runner.invoke(app, ["--debug", "data", "info", str(tmp_path / "a.tgz")])
    result = runner.invoke(app, ["data", "info", str(tmp_path / "b.tgz")])
    assert result.exit_code == 1 and result.stderr.startswith("error: ")


def test_interrupt_and_unexpected_errors_are_one_line(tmp_path, monkeypatch) -> None:
    import cxrsearch.data.info as info

    reports = tmp_path / "reports"
    reports.mkdir()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(info, "dataset_info", interrupted)
    result = CliRunner().invoke(app, ["data", "info", str(reports)])
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert result.stderr.strip().startswith("error: interrupted (work done so far is kept;")

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(info, "dataset_info", broken)
    result = CliRunner().invoke(app, ["data", "info", str(reports)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        result.stderr.strip()
        == "error: internal error: ZeroDivisionError: boom (re-run with --debug for the traceback)"
    )


def test_a_closed_pipe_ends_quietly_with_status_141(reports_tgz) -> None:
    """``cxrsearch ... --json | head -1``: the reader is gone; no internal error, the shell's status."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "cxrsearch.cli.main", "data", "info", str(reports_tgz), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before anything is written
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err
    assert b"internal error" not in err and b"Traceback" not in err and b"Exception ignored" not in err
