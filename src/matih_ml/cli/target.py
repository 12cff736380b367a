"""Where a tenant's command goes: a matih-ml server, or (for operators) its stores.

Every tenant-facing command (``models``, ``runs``, ``policy``, ``approvals``, ``events``,
``webhooks``, ``jobs``) talks to a server through :class:`~matih_ml.client.MatihClient`
by default: ``--url``/``--api-key``, else ``MATIH_URL``/``MATIH_API_KEY``, else a profile
of ``~/.config/matih-ml/config.toml``. The tenant and the role come from the key, so the
server's rules hold as they do over REST. ``--local --tenant T`` is the operator's choice
on the server itself: the same contracts in process (``matih_ml.local``), as an admin of
that tenant.
Nothing is read or created locally unless ``--local`` says so.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Annotated, Any

import typer

from matih_ml.errors import ValidationError

if TYPE_CHECKING:
    from matih_ml.client import MatihClient
    from matih_ml.local import LocalClient
    from matih_ml.services import Services

_PANEL = "Server"

TenantOpt = Annotated[
    str | None,
    typer.Option(
        "--tenant",
        "-t",
        help="With --local, the tenant. Against a server the key names it; if given, it "
        "must be the key's.",
        rich_help_panel=_PANEL,
    ),
]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url", help="The server's URL (else MATIH_URL, else the profile).", rich_help_panel=_PANEL
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="An API key (else MATIH_API_KEY, else the profile).",
        rich_help_panel=_PANEL,
        show_default=False,
    ),
]
ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="A profile of ~/.config/matih-ml/config.toml (else MATIH_PROFILE, else default).",
        rich_help_panel=_PANEL,
    ),
]
LocalOpt = Annotated[
    bool,
    typer.Option(
        "--local",
        help="Operators on the server: open its stores directly (MATIH_* settings) for "
        "--tenant, instead of calling a server.",
        rich_help_panel=_PANEL,
    ),
]


@dataclass(frozen=True)
class Target:
    """A command's connection options, as given."""

    tenant: str | None = None
    url: str | None = None
    api_key: str | None = None
    profile: str | None = None
    local: bool = False

    def client(self) -> MatihClient:
        """The server's client; with ``--tenant``, checked to be the key's tenant.

        Raises:
            ValidationError: With ``--local`` (the caller asked for the stores), when no
                server is configured (naming every place looked), or for another tenant.
            UnavailableError: If the server cannot be reached (naming its URL).
        """
        from matih_ml.client import MatihClient
        from matih_ml.client.config import ConfigError

        if self.local:
            raise ValidationError("This command works against a server only; drop --local.")
        try:
            client = MatihClient(self.url, self.api_key, profile=self.profile)
        except ConfigError as exc:
            raise ValidationError(
                f"{exc.message} Operators on the server may use --local --tenant T instead.",
                details=exc.details,
            ) from None
        if self.tenant:
            mine = client.whoami().tenant_id
            if mine != self.tenant:
                client.close()
                raise ValidationError(
                    f"--tenant {self.tenant!r} is not the key's tenant ({mine!r}) at "
                    f"{client.url}: a key works in its own tenant only.",
                    details={"tenant": self.tenant, "key_tenant": mine},
                )
        return client

    def doors(self) -> MatihClient | LocalClient:
        """The contracts this command calls: the server's client, or with ``--local`` this
        process's (``matih_ml.local``) as an operator of ``--tenant``.

        Either way the same methods run the same rules; only where they run differs.

        Raises:
            ValidationError: As :meth:`client` and :meth:`services` say.
            NotFoundError: With ``--local``, the tenant does not exist.
        """
        if not self.local:
            return self.client()
        from matih_ml.local import LocalClient

        services, tenant = self.services()
        return LocalClient.operator(services, tenant)

    def services(self) -> tuple[Services, str]:
        """The server's own stores and the tenant (``--local``).

        Raises:
            ValidationError: Without ``--tenant``, or with a URL or key as well.
        """
        from matih_ml.cli.output import load_services

        if not self.tenant:
            raise ValidationError("--local works on one tenant: give --tenant.")
        if self.url or self.api_key or self.profile:
            raise ValidationError("--local opens the stores directly: drop --url/--api-key.")
        return load_services(), self.tenant


_OPTIONS = {
    "tenant": TenantOpt,
    "url": UrlOpt,
    "api_key": ApiKeyOpt,
    "profile": ProfileOpt,
    "local": LocalOpt,
}


def targeted(fn: Callable[..., None]) -> Callable[..., None]:
    """Give a command the connection options; it receives them as ``target``.

    The options are added to the command's signature (after its own), so every
    tenant-facing command takes them in the same way.
    """
    sig = inspect.signature(fn, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "target"]
    added = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=annotation,
            default=False if name == "local" else None,
        )
        for name, annotation in _OPTIONS.items()
    ]

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        target = Target(**{name: kwargs.pop(name) for name in _OPTIONS})
        fn(*args, target=target, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {
        **{k: v for k, v in fn.__annotations__.items() if k != "target"},
        **_OPTIONS,
    }
    return wrapper
