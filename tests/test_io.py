"""fume.io: atomic writes (permissions, failures, backups) and signals held back during a write.
The signals are sent by the test itself from inside the block, so the moment is always the same."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pandas as pd
import pytest

from fume.io import atomic_path, signals_deferred, staged_dir, write_csv, write_json, write_text, write_with


@pytest.fixture
def umask():
    """umask(value) sets the process umask for the test; the old one is restored afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


@pytest.fixture
def python_sigint():
    """SIGINT raises KeyboardInterrupt (Python's own handler), whatever the test runner installed."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664), (0o077, 0o600)])
def test_new_files_get_the_permissions_of_the_umask(tmp_path: Path, umask, mask: int, expected: int) -> None:
    umask(mask)
    write_text(tmp_path / "a.txt", "a")
    write_json(tmp_path / "b.json", {"x": 1})
    write_csv(tmp_path / "c.csv", pd.DataFrame({"x": [1]}))
    write_with(tmp_path / "d.bin", lambda tmp: tmp.write_bytes(b"d"))
    with staged_dir(tmp_path / "staged") as stage:
        (stage / "sub").mkdir()
        (stage / "sub" / "e.txt").write_text("e")
    written = [tmp_path / n for n in ("a.txt", "b.json", "c.csv", "d.bin")] + [tmp_path / "staged" / "sub" / "e.txt"]
    assert {p.name: oct(mode(p)) for p in written} == {p.name: oct(expected) for p in written}


def test_rewriting_a_file_keeps_its_permissions(tmp_path: Path, umask) -> None:
    umask(0o022)
    target = tmp_path / "shared.csv"
    target.write_text("old\n")
    target.chmod(0o664)  # made group-writable by hand
    write_text(target, "new\n")
    assert mode(target) == 0o664 and target.read_text() == "new\n"


def test_a_failed_write_leaves_neither_the_target_nor_a_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "metrics.json"
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp.suffix == ".json" and tmp != target
            tmp.write_text('{"half": ')
            raise RuntimeError("writer failed")
    assert list(target.parent.iterdir()) == []


def test_an_existing_target_stays_intact_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_json(target, {"miou": 0.5})
    before = target.read_bytes()

    def broken(tmp: Path) -> None:
        tmp.write_text("{")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_with(target, broken)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_write_csv_keeps_earlier_tables_as_bak_bak1_bak2(tmp_path: Path) -> None:
    target = tmp_path / "results.csv"
    assert write_csv(target, pd.DataFrame({"run": [0]}), backup=True) is None  # nothing to keep yet
    kept = [write_csv(target, pd.DataFrame({"run": [k]}), backup=True) for k in (1, 2, 3)]
    assert [p.name for p in kept] == ["results.csv.bak", "results.csv.bak1", "results.csv.bak2"]
    assert [pd.read_csv(p)["run"].tolist() for p in kept] == [[0], [1], [2]]
    assert pd.read_csv(target)["run"].tolist() == [3]
    assert write_csv(target, pd.DataFrame({"run": [4]})) is None  # no backup unless asked
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.csv.bak", "results.csv.bak1", "results.csv.bak2"]


def test_sigint_inside_the_block_is_raised_after_it(python_sigint) -> None:
    steps: list[str] = []
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("the block went on after the signal")
        steps.append("not reached: KeyboardInterrupt comes as the block ends")
    assert steps == ["the block went on after the signal"]
    assert signal.getsignal(signal.SIGINT) is before


def test_sigint_during_an_atomic_write_comes_after_the_complete_file(tmp_path: Path, python_sigint) -> None:
    target = tmp_path / "last.ckpt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"first half ")
                os.kill(os.getpid(), signal.SIGINT)
                f.write(b"second half")
    assert target.read_bytes() == b"first half second half"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_sigterm_is_held_too_and_nested_blocks_deliver_at_the_outermost_end(tmp_path: Path) -> None:
    class Stopped(Exception):
        pass

    def stop(signum, frame):
        raise Stopped(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        steps: list[str] = []
        with pytest.raises(Stopped, match="SIGTERM"):
            with signals_deferred():
                write_text(tmp_path / "a.txt", "a")  # an atomic write nested in the block
                os.kill(os.getpid(), signal.SIGTERM)
                write_text(tmp_path / "b.txt", "b")  # its inner block ends: still held
                steps.append("both written")
        assert steps == ["both written"]
        assert (tmp_path / "b.txt").read_text() == "b"
        assert signal.getsignal(signal.SIGTERM) is stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_no_signal_no_change(tmp_path: Path) -> None:
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with signals_deferred():
        pass
    assert {s: signal.getsignal(s) for s in handlers} == handlers
