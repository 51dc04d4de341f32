"""Sub-commands (registered on fume.cli.app)."""

from fume.cli import app  # noqa: F401
