"""``blendin-local doctor``: check this machine, the llama.cpp build and the default models."""

from __future__ import annotations

import sys

import click

from .. import doctor


@click.command("doctor")
def doctor_command() -> None:
    """Check this machine, the llama.cpp build and the default models; paste the output into a bug
    report. Exits 1 when something is broken."""
    failures = 0
    for check in doctor.run_checks():
        failures += check.status == doctor.FAIL
        colour = {doctor.OK: "green", doctor.WARN: "yellow", doctor.FAIL: "red"}[check.status]
        click.echo(f"{click.style(f'{check.status:4}', fg=colour)}  {check.name:30} {check.detail}")
    if failures:
        click.echo(f"{failures} problem(s) found", err=True)
        sys.exit(1)
    click.echo("everything works")


command = doctor_command
