"""CLI commands: ``semcat spark pack-env`` (a packed environment for executors without a shared venv)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from semcat.commands._common import err_console

spark_app = typer.Typer(name="spark", help="Spark helpers: ship semcat to executors that lack it.",
                        no_args_is_help=True)


@spark_app.command("pack-env")
def pack_env(
    out: Annotated[Path, typer.Argument(help="Archive to write (.tar.gz).")] = Path("env.tar.gz"),
    full: Annotated[bool, typer.Option("--full", help="Pack this whole venv (torch included; semcat must not be an editable install).")] = False,
    semcat_only: Annotated[bool, typer.Option("--semcat-only", help="Pack semcat alone: for nodes whose executors find its dependencies on their PYTHONPATH.")] = False,
    compress_level: Annotated[int, typer.Option("--compress-level", min=0, max=9, help="gzip level: lower packs faster, ships more bytes.")] = 4,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing archive.")] = False,
) -> None:
    """Pack what Spark executors need (semcat, OpenVINO, numpy, pandas, pyarrow...) with venv-pack.

    Ship it with the job (--conf spark.archives=env.tar.gz#environment) and run the job with
    PYSPARK_PYTHON=./environment/bin/python: executors unpack it and run its Python. Example:
    semcat spark pack-env env.tar.gz. The archive links to this venv's base Python, which must
    exist at the same path on every node.
    """
    from semcat.engines.packenv import EXECUTOR_DISTRIBUTIONS
    from semcat.engines.packenv import pack_env as pack
    from semcat.errors import SemcatError

    try:
        res = pack(out, full=full, packages=() if semcat_only else EXECUTOR_DISTRIBUTIONS,
                   compress_level=compress_level, overwrite=overwrite)
    except SemcatError as e:
        err_console.print(f"[red]error[/red]: {e}", markup=True)
        raise typer.Exit(code=1) from None
    err_console.print(f"wrote {res.path}: {res.bytes / 1e6:.1f} MB, {res.distributions} packages, "
                      f"{res.seconds:.0f} s; every node needs Python at {res.python}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``semcat spark`` group to the top-level app."""
    app.add_typer(spark_app)
