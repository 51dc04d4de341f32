"""FUME's messages (notes, warnings, "wrote X", "interrupted at epoch N") go through `logging`,
under the "fume" logger: a library or notebook user sees them with any logging setup
(`logging.basicConfig(level=logging.INFO)`; warnings show even without one), the `fume` command
shows them through `setup_cli_logging`. Under DDP only the process of global rank zero emits
them, so a message appears once, not once per process. Progress bars and the tables a command
prints as its result stay on rich consoles.
"""

from __future__ import annotations

import logging
import os
import sys

ROOT = "fume"
# Where each launcher puts the global rank (the same order as Lightning's).
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def global_rank() -> int:
    """This process's global rank: Lightning's once a strategy has set it up, else the launcher's
    environment variables, else 0."""
    rank_zero = sys.modules.get("lightning_utilities.core.rank_zero")  # never imported from here (slow)
    rank = getattr(getattr(rank_zero, "rank_zero_only", None), "rank", None)
    if isinstance(rank, int):
        return rank
    for key in RANK_VARIABLES:
        value = os.environ.get(key)
        if value is not None and value.strip().isdigit():
            return int(value)
    return 0


class RankZeroFilter(logging.Filter):
    """Passes records only in the process of global rank zero."""

    def filter(self, record: logging.LogRecord) -> bool:
        return global_rank() == 0


_RANK_ZERO = RankZeroFilter()


def get_logger(name: str) -> logging.Logger:
    """`get_logger(__name__)`: the logger of a FUME module ("fume.<...>"; a name outside the
    package is placed under "fume."), emitting on rank zero only."""
    if name != ROOT and not name.startswith(ROOT + "."):
        name = f"{ROOT}.{name}"
    logger = logging.getLogger(name)
    if _RANK_ZERO not in logger.filters:
        logger.addFilter(_RANK_ZERO)
    return logger


def _cli_handler(verbose: bool) -> logging.Handler:
    from rich.console import Console
    from rich.logging import RichHandler
    from rich.text import Text

    class CliHandler(RichHandler):
        """One line per message, no time / level / path columns; warnings in yellow, errors in red.
        Lines are not wrapped, so a message piped into a log file stays on one line."""

        def render(self, *, record, traceback, message_renderable):  # type: ignore[override]
            text = message_renderable if isinstance(message_renderable, Text) else Text(str(message_renderable))
            if record.levelno >= logging.ERROR:
                text.stylize("red")
            elif record.levelno >= logging.WARNING:
                text.stylize("yellow")
            return text if traceback is None else traceback

    handler = CliHandler(
        console=Console(stderr=True, soft_wrap=True), show_time=False, show_level=False, show_path=False,
        markup=False, rich_tracebacks=verbose,
    )
    handler.set_name("fume-cli")
    handler.addFilter(_RANK_ZERO)
    return handler


def setup_cli_logging(verbose: bool = False) -> logging.Logger:
    """The `fume` command's logging: FUME's messages to stderr through rich, INFO and up (DEBUG
    with `verbose`), rank zero only. Calling it again replaces the handler it installed before."""
    logger = logging.getLogger(ROOT)
    for handler in [h for h in logger.handlers if h.get_name() == "fume-cli"]:
        logger.removeHandler(handler)
    logger.addHandler(_cli_handler(verbose))
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    return logger
