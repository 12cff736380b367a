"""What every ``matih-ml`` command shares: loading the services, printing a table or
JSON, and turning our errors into one line and exit code 1."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from functools import wraps
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from matih_ml.errors import MatihError

if TYPE_CHECKING:
    from matih_ml.services import Services

console = Console()
# Progress and errors go to stderr so that --json output on stdout stays parseable.
stderr = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="The tenant.")]


def load_services() -> Services:
    # Imported here: `--help` should not import MLflow or connect to anything.
    from matih_ml.config import Settings
    from matih_ml.services import build_services

    return build_services(Settings())


def plain(value: Any) -> Any:
    """JSON-able data of a dataclass, a pydantic model (the client's answers), or both
    nested in lists and dicts."""
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def emit(rows: Sequence[Any] | Any, columns: Iterable[str], as_json: bool, title: str) -> None:
    data = plain(rows)
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    items = data if isinstance(data, list) else [data]
    table = Table(title=title)
    cols = list(columns)
    for c in cols:
        table.add_column(c)
    for item in items:
        table.add_row(*(cell(item.get(c)) for c in cols))
    console.print(table)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def handles_errors(fn: Callable[..., None]) -> Callable[..., None]:
    """Print our errors as one line (or JSON) and exit 1, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except MatihError as exc:
            if kwargs.get("as_json"):
                typer.echo(json.dumps({"error": exc.to_dict()}))
            else:
                # One line, whatever the terminal's width, and the message as it is (a
                # "[default]" in it is a profile's name, not rich markup).
                stderr.print(
                    f"[red]error[/red] ({exc.code}): {escape(exc.message)}", soft_wrap=True
                )
            raise typer.Exit(1) from None

    return wrapper
