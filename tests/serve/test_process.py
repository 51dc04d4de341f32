"""`fume serve` as a process: kill -9 loses no stored history row (SQLite WAL), and a restart keeps
the history; a port that is taken is refused with one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fume.serve.history import History


@pytest.mark.slow
def test_kill_9_loses_no_stored_row(serve_process, onnx_model: Path, sequence: Path, tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    server = serve_process(["--model", str(onnx_model), "--db", str(db), "--source", f"pen=co2:{sequence / 'co2.mp4'},ch4:{sequence / 'ch4.mp4'},loop"],
                           tmp_path / "serve.log")
    seen = server.wait_for(lambda d: len(d["rows"]) >= 5, "five stored pairs", url=f"{server.url}/api/history")["rows"]
    os.kill(server.process.pid, signal.SIGKILL)
    assert server.process.wait(30) == -signal.SIGKILL
    assert db.with_name(db.name + "-wal").exists()  # the rows were in the WAL, not yet checkpointed: recovery is exercised

    history = History(db)
    try:
        stored = history.pairs()
    finally:
        history.close()
    by_id = {row["id"]: row for row in stored}
    assert all(by_id[row["id"]] == row for row in seen), "a row the API had returned is lost or changed"
    assert sorted(by_id) == list(range(1, len(stored) + 1))  # no hole: every committed row is there
    assert len(stored) >= len(seen)

    # A restart on the same file keeps the history. Without --model the service runs the bundled
    # demo model and says so.
    again = serve_process(["--db", str(db)], tmp_path / "serve2.log")
    rows = httpx.get(f"{again.url}/api/history", params={"source": "pen"}, timeout=10).json()["rows"]
    assert [r["id"] for r in rows] == sorted(by_id)
    assert httpx.get(f"{again.url}/api/sources", timeout=10).json()["model"]["demo"] is True


def test_a_taken_port_is_refused_with_one_line(onnx_model: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-c", "from fume.cli import main; main()", "serve", "--model", str(onnx_model), "--port", str(port), "--db", str(tmp_path / "h.sqlite")],
            capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port}" in done.stderr and "in use" in done.stderr
    assert not (tmp_path / "h.sqlite").exists()
