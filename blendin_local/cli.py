"""``blendin-local``: a thin Click layer over the library. Docstrings are the ``--help``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from . import commands
from .errors import BlendinError, UsageError
from .std_streams import guard_std_streams

EXIT_INTERRUPTED = 130


class LazyGroup(click.Group):
    """The commands of :mod:`commands`, each module imported only when its command is used
    (Textual, matplotlib, the web stack stay unloaded)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(commands.names()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in commands.names():
            return commands.load(name)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup)
@click.version_option(package_name="blendin-local")
@click.option("-v", "--verbose", is_flag=True, help="Log what the library decides (to stderr).")
def cli(verbose: bool) -> None:
    """BlendIn inference-time alignment on two local GGUF models.

    A strong unaligned base writes; when it is unsure (top-1 < gamma) a small aligned guide's
    distribution is blended in. Start with `blendin-local generate "Your question"`;
    `blendin-local doctor` checks this machine.
    """
    if verbose:
        import logging

        logging.basicConfig(format="[%(name)s] %(message)s")
        logging.getLogger("blendin_local").setLevel(logging.INFO)


def main() -> None:
    """Entry point: user errors are one line and a non-zero exit, never a traceback."""
    guard_std_streams()
    try:
        cli.main(standalone_mode=False)
        sys.stdout.flush()  # a full disk under stdout shows here, not as noise at exit
    except click.exceptions.Abort:
        click.echo("\ninterrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UsageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except BlendinError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("\ninterrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
    except OSError as exc:  # our own files are named by fileio.path_error; this is stdout
        _silence_stdout()
        click.echo(f"error: cannot write the output: {exc.strerror or exc}", err=True)
        sys.exit(1)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing what is left at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    main()


__all__ = ["cli", "main", "Path"]
