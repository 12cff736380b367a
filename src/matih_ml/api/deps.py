"""FastAPI dependencies: the services, the caller, and the permission it needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from matih_ml.auth.principal import Permission, Principal
from matih_ml.errors import UnauthenticatedError
from matih_ml.services import Services

_bearer = HTTPBearer(auto_error=False, description="An API key or a JWT.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")


def get_services(request: Request) -> Services:
    """The services built at start-up (tests override this dependency)."""
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_principal(
    services: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """Authenticate the request. Its tenant comes from the credential, and only from it."""
    if bearer is not None and bearer.credentials:
        token = bearer.credentials
        if token.startswith("mk_"):
            return services.api_keys.verify(token)
        if services.jwt.enabled and token.count(".") == 2:
            return services.jwt.verify(token)
        raise UnauthenticatedError("The bearer credential is not valid.")
    if api_key:
        return services.api_keys.verify(api_key)
    raise UnauthenticatedError(
        "No credential: send 'Authorization: Bearer <key or JWT>' or 'X-API-Key: <key>'."
    )


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _needs(permission: Permission) -> Callable[[Principal], Principal]:
    def check(principal: PrincipalDep) -> Principal:
        principal.require(permission)
        return principal

    return check


Reader = Annotated[Principal, Depends(_needs(Permission.READ))]
Writer = Annotated[Principal, Depends(_needs(Permission.WRITE))]
Approver = Annotated[Principal, Depends(_needs(Permission.APPROVE))]
Admin = Annotated[Principal, Depends(_needs(Permission.ADMIN))]
