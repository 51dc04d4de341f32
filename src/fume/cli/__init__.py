"""The `fume` command. Importing this package registers every command on `app` (the command
modules imported at the bottom); their heavy imports (torch, lightning, pandas, onnxruntime)
happen inside the command functions, so `fume --help` stays fast.

How a command ends:
  0    success
  1    a FumeError (one line: "error: <message>"; a file that cannot be written, for a full disk,
       a read-only folder or --out naming a file, is one too: "error: cannot write PATH: REASON"),
       any other system error on a file ("error: REASON: PATH"), a failed check (validate-data, audit-leakage),
       or `fume train` stopped by Ctrl-C / SIGTERM (Lightning's exit code): it saves last.ckpt and
       says "interrupted at epoch N, step S; saved RUN_DIR/checkpoints/last.ckpt. Continue with
       `fume train ... --resume`."
  2    a usage error (unknown option, missing argument)
  130  Ctrl-C anywhere else ("interrupted (Ctrl-C)")
  143  SIGTERM anywhere else ("terminated (SIGTERM)")
A signal that arrives while a file is being written takes effect once the file is complete (fume.io).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from fume.errors import ConfigError, FumeError
from fume.logs import get_logger, setup_cli_logging

log = get_logger(__name__)
console = Console(stderr=True, soft_wrap=True)  # an error stays on one line, even in a log file

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM inside a `fume` command: raised like Ctrl-C's KeyboardInterrupt, so the command stops
    the same way (`fume train` saves last.ckpt; partial outputs are cleaned up)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


class FumeGroup(TyperGroup):
    """Runs each command with SIGTERM raising Terminated, and ends an interrupted command with
    one line and exit code 130 / 143 instead of a traceback."""

    def invoke(self, ctx: Any) -> Any:
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
        try:
            return super().invoke(ctx)
        except Terminated:
            log.warning("terminated (SIGTERM)")
            raise typer.Exit(EXIT_TERMINATED) from None
        except KeyboardInterrupt:
            log.warning("interrupted (Ctrl-C)")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        finally:
            if main_thread and previous is not None:
                signal.signal(signal.SIGTERM, previous)


app = typer.Typer(
    name="fume",
    cls=FumeGroup,
    help="FUME: dual-gas optical gas imaging for rumen acidosis detection.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _options(verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show debug messages.")) -> None:
    setup_cli_logging(verbose)


def check_out_folder(out: Path | None, option: str = "--out") -> None:
    """Refuse at once an output folder that names an existing file (or lies inside one)."""
    if out is None:
        return
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                what = "is a file" if path == out else f"lies inside {path}, which is a file"
                raise ConfigError(f"{option} {out} {what}, not a folder; choose a folder (new or existing)")
            return


def check_out_file(out: Path | None, option: str = "--out") -> None:
    """An output file: refuse at once one that names a folder or whose folder is a file."""
    if out is None:
        return
    if out.is_dir():
        raise ConfigError(f"{option} {out} is a folder; give the file to write, e.g. {out / 'model.onnx'}")
    for path in out.parents:
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"{option} {out} lies inside {path}, which is a file, not a folder")
            return


# Packages of the `train` extra (pyproject.toml): the base install runs ONNX models without them.
TRAIN_PACKAGES = frozenset({
    "torch", "lightning", "torchmetrics", "tensorboard", "scipy", "albumentations", "sklearn", "matplotlib", "onnx", "onnxscript",
    "safetensors", "huggingface_hub", "optuna", "optuna_integration", "submitit",
})


def main() -> None:
    """The console script: `fume ...`; a FumeError, a system error on a file, or a command that
    needs the training extra on a runtime install ends with one line and exit code 1."""
    try:
        app()
    except FumeError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(1)
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in TRAIN_PACKAGES:
            raise
        console.print(
            "[bold red]error:[/] " + escape(f'this needs {err.name}, which comes with the training extra: pip install "fume[train]" '
                                            "(the base install runs ONNX models: fume predict --onnx, fume serve --model FILE.onnx)"),
            highlight=False,
        )
        sys.exit(1)
    except OSError as err:  # not translated where it happened: still one line, naming the file
        if err.errno is None or not err.strerror:
            raise
        where = f": {err.filename}" if err.filename is not None else ""
        console.print(f"[bold red]error:[/] {err.strerror}{where}", highlight=False)
        sys.exit(1)


# Imported for their side effect: each registers its commands on `app` (they import `app` above).
from fume.cli import data_commands, inference_commands, model_commands, report_commands, scale_commands, serve_commands, train_commands  # noqa: E402, F401
