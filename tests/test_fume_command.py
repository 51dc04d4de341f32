"""The `fume` command as a whole: every command registered by `import fume.cli` (without importing
torch & co.), one line and a non-zero exit code for Ctrl-C and SIGTERM, and FUME's log messages
on rank zero only. Signals are sent by the process to itself at a known point, never on a timer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = {
    "generate", "validate-data", "split", "audit-leakage", "pair", "predict", "export", "benchmark", "models",
    "model-card", "experiments", "report", "train", "evaluate", "quickstart", "import-recording", "import-layout",
    "export-for-labelling", "publish", "tune", "serve",
}
HEAVY = ("torch", "lightning", "pandas", "onnxruntime", "onnx", "cv2", "sklearn", "matplotlib")


def python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_import_registers_every_command_and_imports_nothing_heavy() -> None:
    done = python(
        "import json, sys, typer, fume.cli\n"
        "group = typer.main.get_command(fume.cli.app)\n"
        f"print(json.dumps({{'commands': sorted(group.commands), 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))"
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert set(found["commands"]) == COMMANDS
    assert found["heavy"] == []


def test_help_lists_every_command() -> None:
    done = python("from fume.cli import main; main()", "--help")
    assert done.returncode == 0, done.stderr
    listed = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("│ ") and len(line.split()) > 1}
    assert COMMANDS <= listed


# A `fume` with one extra command that sends itself a signal in the middle of writing a file.
RUNNER = """\
import os, signal, sys
from pathlib import Path

from fume.cli import app, main
from fume.io import atomic_path


@app.command("write-and-signal")
def write_and_signal(target: Path, name: str) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "w") as f:
            f.write("complete ")
            os.kill(os.getpid(), getattr(signal, name))
            f.write("file")
    print("not reached: the signal stops the command once the file is written")


sys.argv[0] = "fume"
main()
"""


@pytest.mark.parametrize("name, code, line", [("SIGINT", 130, "interrupted (Ctrl-C)"), ("SIGTERM", 143, "terminated (SIGTERM)")])
def test_a_signal_ends_a_command_with_one_line_after_the_write(tmp_path: Path, name: str, code: int, line: str) -> None:
    target = tmp_path / "out" / "table.csv"
    done = python(RUNNER, "write-and-signal", str(target), name)
    assert done.returncode == code, done.stdout + done.stderr
    assert done.stderr.strip() == line
    assert "not reached" not in done.stdout
    assert target.read_text() == "complete file"
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]


def test_a_fume_error_is_one_line_with_exit_code_1(tmp_path: Path) -> None:
    done = python("from fume.cli import main; main()", "split", str(tmp_path / "missing"))
    assert done.returncode == 1
    assert done.stderr.startswith("error: no annotation table in ") and str(tmp_path / "missing") in done.stderr
    assert len(done.stderr.splitlines()) == 1  # not wrapped, no traceback


LOG = """\
from fume.logs import get_logger, setup_cli_logging
setup_cli_logging()
log = get_logger("fume.workflows.example")
log.debug("hidden unless --verbose")
log.info("wrote results.csv")
log.warning("the model does not classify")
"""


@pytest.mark.parametrize("rank, shown", [("0", True), ("1", False)])
def test_cli_logging_shows_info_and_up_on_rank_zero_only(rank: str, shown: bool) -> None:
    done = python(LOG, env={"RANK": rank, "LOCAL_RANK": rank})
    assert done.returncode == 0, done.stderr
    expected = ["wrote results.csv", "the model does not classify"] if shown else []
    assert done.stderr.splitlines() == expected


def test_messages_and_docs_name_only_real_commands() -> None:
    """`fume <command>` in the sources, shipped configs and README: the command exists."""
    repo = Path(__file__).resolve().parents[1]
    files = [*sorted((repo / "src" / "fume").rglob("*.py")), *sorted((repo / "src" / "fume").rglob("*.yaml")), repo / "README.md"]
    wrong = [
        f"{path.relative_to(repo)}: fume {name}"
        for path in files if path.is_file()
        for name in re.findall(r"(?<![\w./-])fume ([a-z][a-z-]*)", path.read_text(encoding="utf-8"))
        if name not in COMMANDS
    ]
    assert not wrong, "commands that do not exist:\n" + "\n".join(wrong)


def test_get_logger_puts_every_name_under_fume() -> None:
    from fume.logs import get_logger

    assert get_logger("fume.training.callbacks").name == "fume.training.callbacks"
    assert get_logger("notebook").name == "fume.notebook"
