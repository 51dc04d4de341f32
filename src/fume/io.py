"""Every file FUME writes goes through here: written under a temporary name beside its target,
then renamed, so a reader (or a crash) never sees half a file; with the permissions an ordinary
write would give (an existing file keeps its mode, a new one gets the umask's, not the temporary
file's 0600); and with Ctrl-C / SIGTERM held back until the rename is done, so an interrupted
run stops after the write, not inside it.

A write that the system refuses (disk full, quota, file size limit, read-only or unwritable
folder, a file where a folder should be) raises fume.errors.WriteError naming the final path and
the system's reason, so `fume` ends with one line instead of a traceback.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from fume.errors import FumeError, WriteError

DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The errors that mean "this cannot be written here" (not a bug, not a missing input).
WRITE_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        "ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM", "ENOTDIR", "EEXIST", "EISDIR",
        "EIO", "ENAMETOOLONG", "EMLINK", "ETXTBSY",
    ) if hasattr(errno, name)
)
_deferral = threading.local()


@contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive inside the block are held and delivered, in order, when the
    outermost such block ends. Outside the main thread (where Python handles no signals) it does nothing."""
    if threading.current_thread() is not threading.main_thread() or getattr(_deferral, "pending", None) is not None:
        yield
        return
    pending: list[int] = []
    _deferral.pending = pending
    # A handler installed outside Python (getsignal() is None) could not be put back: leave it alone.
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: pending.append(signum))
        for sig in DEFERRED_SIGNALS if signal.getsignal(sig) is not None
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _deferral.pending = None
        for signum in dict.fromkeys(pending):  # each signal once, in the order they came
            signal.raise_signal(signum)  # the restored handler runs now (KeyboardInterrupt for SIGINT)


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """An OSError of WRITE_ERRNOS inside the block becomes a WriteError naming `path` (the
    final name, not a temporary one); the reason names the folder at fault when that is another.
    So does an error raised because of one (torch.save turns a failed write of its file object
    into a RuntimeError whose context is the OSError)."""
    try:
        yield
    except FumeError:  # already says what went wrong (a WriteError, or a DataError about an input)
        raise
    except Exception as raised:
        err: BaseException | None = raised
        while err is not None and not (isinstance(err, OSError) and err.errno in WRITE_ERRNOS):
            err = err.__cause__ or err.__context__
        if err is None:
            raise
        reason = err.strerror or str(err)
        if err.filename is not None and Path(os.fsdecode(err.filename)) in path.parents:
            reason += f": {os.fsdecode(err.filename)}"
        raise WriteError(path, reason) from raised


def _permissions(target: Path | None = None) -> int:
    """The mode an ordinary write to `target` gives: an existing file keeps its own, a new one gets
    0666 less the umask (os.umask only reads by setting)."""
    if target is not None:
        try:
            return stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:
            pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _temporary_beside(path: Path) -> Path:
    """An empty temporary file in `path`'s folder (created if needed) with `path`'s suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    return Path(name)


def _publish(tmp: Path, target: Path) -> None:
    """`tmp` becomes `target`, with the permissions an ordinary write to `target` would give."""
    os.chmod(tmp, _permissions(target))
    os.replace(tmp, target)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix, so writers that choose the format by extension
    still work) to write to; it becomes `path` when the block succeeds and is removed if it fails."""
    path = Path(path)
    with _writing(path), signals_deferred():
        tmp = _temporary_beside(path)
        try:
            yield tmp
            _publish(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> Path:
    """`durable`: the data reach the disk before the rename (fsync), so a power cut leaves the old
    file or the new one, never an empty one. Bulk outputs that can be made again (generated
    frames, masks) skip it: an fsync per frame would slow the generator several times over."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def jsonable(value: Any) -> Any:
    """NaN/inf -> None and numpy / torch values -> Python, so json.dumps writes valid JSON."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and hasattr(value, "ndim"):  # numpy arrays and scalars, torch tensors
        return jsonable(value.item() if value.ndim == 0 else value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(jsonable(data), indent=2) + "\n")


def write_csv(path: str | os.PathLike, table: Any, backup: bool = False) -> Path | None:
    """A pandas DataFrame as CSV without its index. With `backup`, an existing file is first kept
    as `<name>.bak` (`.bak1`, `.bak2`, ... when that exists); returns the backup path, if any."""
    path = Path(path)
    kept = None
    if backup and path.exists():
        kept = path.with_name(path.name + ".bak")
        n = 0
        while kept.exists():
            n += 1
            kept = path.with_name(f"{path.name}.bak{n}")
        shutil.copy2(path, kept)  # the old table stays in place until the new one is complete
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return kept


def write_png(path: str | os.PathLike, image: np.ndarray, compression: int | None = None) -> Path:
    """An 8-bit gray or BGR image as PNG (encoded first, so an encoder error writes nothing);
    `compression` is zlib's level 0-9 (OpenCV's default 3 when None)."""
    import cv2

    params = [cv2.IMWRITE_PNG_COMPRESSION, compression] if compression is not None else []
    ok, data = cv2.imencode(".png", image, params)
    if not ok:
        raise OSError(f"could not encode {path} as PNG (array of shape {image.shape}, dtype {image.dtype})")
    return write_bytes(path, data.tobytes(), durable=False)


def write_with(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """Any library's own writer (np.savez, fig.savefig, onnx.save, torch.save), atomically: `writer`
    is called with the temporary path."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


@contextmanager
def staged_dir(out: str | os.PathLike) -> Iterator[Path]:
    """A hidden folder inside `out` to write many files into; they move to the same places under
    `out` when the block succeeds (nothing under `out` changes when it fails). A WriteError for a
    staged file names the file's place under `out`, not the staging folder."""
    out = Path(out)
    with _writing(out):
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".fume-partial-", dir=out))
    try:
        try:
            yield staging
        except WriteError as err:
            if isinstance(err.path, Path) and staging in err.path.parents:
                raise WriteError(out / err.path.relative_to(staging), err.reason) from err.__cause__
            raise
        with signals_deferred():
            for path in sorted(p for p in staging.rglob("*") if p.is_file()):
                target = out / path.relative_to(staging)
                with _writing(target):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _publish(path, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class VideoWriter:
    """H.264 (or MPEG-4 where the PyAV build lacks x264) through PyAV, from BGR frames, written
    under a temporary name and renamed by close(); abort() discards it."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        import av

        self.av = av
        self.path = Path(path)
        with _writing(self.path):
            self.tmp = _temporary_beside(self.path)
        self.container = av.open(str(self.tmp), mode="w", format="mp4")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        self.stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            # ultrafast rather than veryfast: the encode stage of fume predict's annotated video took
            # 12 -> 7 ms per pair and the whole path 24.6 -> 28.0 pairs/s on 2 cores
            # (benchmarks/video_speed.py), keeping up with two 30 fps cameras. Files may be larger.
            self.stream.options = {"crf": "23", "preset": "ultrafast"}
        self.size: tuple[int, int] | None = None

    def write(self, bgr: np.ndarray) -> None:
        h, w = bgr.shape[:2]
        if self.size is None:
            self.size = (w + w % 2, h + h % 2)  # yuv420p needs even sides
            self.stream.width, self.stream.height = self.size
        padded = np.zeros((self.size[1], self.size[0], 3), np.uint8)
        padded[: min(h, self.size[1]), : min(w, self.size[0])] = bgr[: self.size[1], : self.size[0]]
        frame = self.av.VideoFrame.from_ndarray(padded, format="bgr24")
        with _writing(self.path):
            for packet in self.stream.encode(frame):
                self.container.mux(packet)

    def close(self) -> Path:
        with signals_deferred(), _writing(self.path):
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
            _publish(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close after a failure and delete the half-written file."""
        try:
            self.container.close()
        except Exception:  # nothing was encoded: the container may refuse to finalise
            pass
        self.tmp.unlink(missing_ok=True)
