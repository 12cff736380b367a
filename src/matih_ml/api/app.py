"""The FastAPI application."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from matih_ml import __version__
from matih_ml.api import errors, mlflow_ui
from matih_ml.api.limits import BodyLimitMiddleware, RateLimitHeadersMiddleware
from matih_ml.api.mlflow import routes as mlflow_routes
from matih_ml.api.quotas import Limits, TenantLimiter
from matih_ml.api.routes import (
    approvals,
    batch_jobs,
    bom,
    events,
    experiments,
    health,
    ingest,
    keys,
    lifecycle,
    lineage,
    models,
    runs,
    serving,
    session,
    training_jobs,
    verification,
    webhooks,
)
from matih_ml.api.unhandled import UnhandledErrorMiddleware
from matih_ml.config import Settings
from matih_ml.services import Services, build_services
from matih_ml.ui import routes as ui_routes


def _operation_id(route: APIRoute) -> str:
    # Stable ids ("models_list_models") so that generated clients read well.
    return f"{route.tags[0]}_{route.name}" if route.tags else route.name


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Build the API. Services are built at start-up unless given (tests pass their own).

    Args:
        settings: Used to build the services; from the environment if omitted.
        services: Ready-made services.
    """
    settings = services.settings if services else (settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "services", None) is None:
            app.state.services = await run_in_threadpool(build_services, settings)
        services: Services = app.state.services
        # What a crash or a lost connection left unprojected is brought in line before
        # the first request (and retried by the dispatcher's chores after that).
        await run_in_threadpool(services.projector.run_pending, 1000)
        if services.settings.dispatcher:
            services.dispatcher.start()
        predictor = serving.get_serving_of(app)
        predictor.start()
        from matih_ml.training.executor import JobExecutor  # Ray is imported per job only

        executor = app.state.executor = JobExecutor(services)
        executor.start()
        # What start-up built lives as long as the process: keep it out of the
        # collector's generations (it halved GC time under load in bench_serving).
        gc.freeze()
        try:
            yield
        finally:
            await run_in_threadpool(executor.stop)
            await run_in_threadpool(predictor.stop)
            if services.settings.dispatcher:
                await run_in_threadpool(services.dispatcher.stop)

    app = FastAPI(
        title="matih-ml",
        version=__version__,
        description="MATIH ML Service: multi-tenant experiment tracking and model registry. "
        "Every request's tenant comes from its credential.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.services = services
    app.state.limiter = build_limiter(app, settings)
    errors.install(app)
    # Serving first: route matching is a scan, and predict is the hottest path.
    for module in (
        serving,
        health,
        models,
        verification,
        bom,
        lifecycle,
        approvals,
        experiments,
        runs,
        lineage,
        ingest,
        keys,
        events,
        webhooks,
        training_jobs,
        batch_jobs,
        session,
    ):
        app.include_router(module.router)
    app.include_router(serving.metrics_router)
    app.include_router(mlflow_routes.router)
    app.include_router(mlflow_ui.router)
    app.include_router(ui_routes.router)
    app.mount("/ui/static", ui_routes.static_app(), name="ui-static")
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RateLimitHeadersMiddleware)
    # Added last, so it wraps the others: whatever no handler took is answered here,
    # without the re-raise of Starlette's outermost middleware that drops the connection.
    app.add_middleware(UnhandledErrorMiddleware)
    _with_training_schemas(app)
    return app


def build_limiter(app: FastAPI, settings: Settings) -> TenantLimiter:
    """The per-tenant limits of this process (docs/api.md, "Limits"). A tenant's stored
    bytes are measured under its artifact prefix, from the app's services (which the
    lifespan builds when none were given)."""
    from matih_ml.api.storage_usage import bytes_under

    def measure(tenant: str) -> int | None:
        services: Services = app.state.services
        return bytes_under(services.tenants.tenant_artifact_root(tenant))

    return TenantLimiter(Limits.of(settings), measure)


def _with_training_schemas(app: FastAPI) -> None:
    # The job body is validated by our own parser (dotted-path errors, the operator's
    # entry points), so FastAPI does not see its model: add its schema by hand.
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            parts = schema.setdefault("components", {}).setdefault("schemas", {})
            parts.update(training_jobs.openapi_schemas())
            parts.update(batch_jobs.openapi_schemas())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
