"""The ``semcat`` command line: a Typer app; each command group lives in ``semcat.commands.*``.

Commands are thin: they parse arguments, call one module, print data to stdout and
messages/progress to stderr, and exit non-zero when anything failed.
"""
from __future__ import annotations

import typer

from semcat import __version__
from semcat.commands._common import SemcatGroup, print_semcat_warnings
from semcat.commands import (
    align,
    calibrate,
    catalog,
    categories,
    data,
    demo,
    doctor,
    duplicates,
    features,
    inspect,
    queue,
    retrain,
    spark,
    train,
    web,
)

app = typer.Typer(
    name="semcat",
    help="Label, calibrate and catalogue SEM image archives with transfer learning.",
    cls=SemcatGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"semcat {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """semcat: SEM image categorisation and cataloguing."""
    print_semcat_warnings()


for _module in (data, inspect, features, train, calibrate, catalog, web, align, demo, duplicates,
                categories, queue, doctor, spark, retrain):
    _module.register(app)


if __name__ == "__main__":  # `python -m semcat.cli`, as the background retrain starts it
    app()
