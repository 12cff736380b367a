"""The FastAPI application."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from matih_ml import __version__
from matih_ml.api import errors
from matih_ml.api.limits import BodyLimitMiddleware
from matih_ml.api.routes import (
    approvals,
    events,
    experiments,
    health,
    ingest,
    keys,
    lifecycle,
    models,
    runs,
    serving,
    webhooks,
)
from matih_ml.config import Settings
from matih_ml.services import Services, build_services


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
        if services.settings.dispatcher:
            services.dispatcher.start()
        predictor = serving.get_serving_of(app)
        predictor.start()
        # What start-up built lives as long as the process: keep it out of the
        # collector's generations (it halved GC time under load in bench_serving).
        gc.freeze()
        try:
            yield
        finally:
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
    errors.install(app)
    # Serving first: route matching is a scan, and predict is the hottest path.
    for module in (
        serving,
        health,
        models,
        lifecycle,
        approvals,
        experiments,
        runs,
        ingest,
        keys,
        events,
        webhooks,
    ):
        app.include_router(module.router)
    app.include_router(serving.metrics_router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    return app
