"""FastAPI dependencies: the services, the caller, and the permission it needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from matih_ml.api.quotas import charge_request
from matih_ml.auth.principal import Permission, Principal
from matih_ml.errors import UnauthenticatedError
from matih_ml.services import Services

_bearer = HTTPBearer(auto_error=False, description="An API key or a JWT.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")


async def get_services(request: Request) -> Services:
    """The services built at start-up (tests override this dependency)."""
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_principal(
    request: Request,
    services: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """Authenticate the request. Its tenant comes from the credential, and only from it;
    the request then counts against that tenant's request rate (429 past it).

    Async, like the other dependencies here: FastAPI runs a sync dependency in the
    thread pool, and those hops were a third of a prediction's cost. The database read
    of a key not verified lately still runs in the pool.
    """
    if bearer is not None and bearer.credentials:
        principal = await authenticate(services, bearer.credentials)
    elif api_key:
        principal = await _verify_key(services, api_key)
    else:
        raise UnauthenticatedError(
            "No credential: send 'Authorization: Bearer <key or JWT>' or 'X-API-Key: <key>'."
        )
    charge_request(request.app, request.scope, principal.tenant_id)
    return principal


async def authenticate(services: Services, token: str) -> Principal:
    """The caller a presented credential (an API key or a JWT) stands for.

    Every door (our REST API, MLflow's protocol, the web pages) authenticates here.

    Raises:
        UnauthenticatedError: If it is neither a valid key nor a valid JWT.
    """
    if token.startswith("mk_"):
        return await _verify_key(services, token)
    if services.jwt.enabled and token.count(".") == 2:
        return await run_in_threadpool(services.jwt.verify, token)
    raise UnauthenticatedError("The bearer credential is not valid.")


async def _verify_key(services: Services, presented: str) -> Principal:
    hit = services.api_keys.cached(presented)
    return hit if hit is not None else await run_in_threadpool(services.api_keys.verify, presented)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _needs(permission: Permission) -> Callable[[Principal], Principal]:
    async def check(principal: PrincipalDep) -> Principal:
        principal.require(permission)
        return principal

    return check


async def caller_with(request: Request, permission: Permission) -> Principal:
    """What ``Reader``, ``Writer``... give, for a hot route that declares no dependency
    (FastAPI's solving of the five behind them was a sixth of a prediction's cost): the
    same credential reading, authentication, rate and permission check.

    Raises:
        UnauthenticatedError: No or a bad credential.
        ForbiddenError: The caller's role lacks ``permission``.
    """
    principal = await get_principal(
        request, request.app.state.services, await _bearer(request), await _api_key(request)
    )
    principal.require(permission)
    return principal


# The credential schemes, for a route that authenticates with caller_with (OpenAPI's
# security requirement, which its dependencies would otherwise have published).
SECURITY = [{"HTTPBearer": []}, {"APIKeyHeader": []}]

Reader = Annotated[Principal, Depends(_needs(Permission.READ))]
Writer = Annotated[Principal, Depends(_needs(Permission.WRITE))]
Approver = Annotated[Principal, Depends(_needs(Permission.APPROVE))]
Admin = Annotated[Principal, Depends(_needs(Permission.ADMIN))]
