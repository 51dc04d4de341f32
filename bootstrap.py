"""Set up a local virtual environment and run FUME's main job or its tests.

    python3 bootstrap.py quickstart [fume quickstart options]
    python3 bootstrap.py test [pytest options]

Needs only Python >= 3.10. The environment lives in `.venv/` and is reinstalled only when
`pyproject.toml` changes. torch is pinned to 2.13.0 here (a CPU build on the project's
machines); a GPU user can install another torch build into `.venv` first.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
TORCH = "torch==2.13.0"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".fume-installed"


def _requirements_digest() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + TORCH.encode()).hexdigest()


def _pip(*args: str) -> None:
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args], check=True)


def ensure_environment() -> None:
    digest = _requirements_digest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    if not PYTHON.exists():
        print(f"Creating virtual environment in {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    print("Installing FUME and its dependencies (first run only; a few minutes)", flush=True)
    _pip(TORCH)  # first, so that no dependency pulls a different (CUDA) torch build
    # Everything: the runtime, training (`train`), the tests (`dev`) and FLIR files (their tests read the shipped samples).
    _pip("-e", f"{ROOT}[train,dev,flir]")
    STAMP.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"quickstart", "test"}:
        print(__doc__)
        return 2
    ensure_environment()
    command, rest = argv[0], argv[1:]
    if command == "quickstart":
        cmd = [str(BIN / "fume"), "quickstart", *rest]
    else:
        cmd = [str(PYTHON), "-m", "pytest", *rest]
    return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
