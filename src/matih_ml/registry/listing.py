"""Pages of a tenant's models: filtered by stage, framework, name and tag, in order; and
one model by name, read the same way.

The search is confined to the tenant; the filters are applied to its results here and
never written into a query, so no input reaches MLflow's filter language.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities.model_registry import RegisteredModel
from sqlalchemy import Engine

from matih_ml import validation
from matih_ml.errors import NotFoundError, ValidationError
from matih_ml.mlflow_adapter import model_reads, stores
from matih_ml.mlflow_adapter.run_reads import summaries
from matih_ml.mlflow_errors import translated
from matih_ml.registry import frameworks, queries
from matih_ml.registry.metadata import TAG_FRAMEWORK, ModelMetadata, Stage
from matih_ml.registry.stages import parse_stage, stage_of
from matih_ml.registry.views import assemble_metadata, build_metadata, is_complete
from matih_ml.tenancy import TenantDirectory

MAX_PAGE = 1000
# A filtered page reads models in chunks of at least this many, and stops after reading
# this many (or after this many calls to a store that is not SQL), answering what it
# found with a token to go on from.
_FILTER_CHUNK = 200
_SCAN_BUDGET = 5000
_MAX_FETCHES = 50
_QUERY_MAX = 128


@dataclass(frozen=True)
class ModelPage:
    items: list[ModelMetadata]
    next_page_token: str | None


@dataclass(frozen=True)
class ModelFilter:
    """The name and tag filters of a model list, checked, applied in Python."""

    name_part: str | None = None
    tag: tuple[str, str] | None = None

    @classmethod
    def of(cls, q: str | None, tag: str | None) -> ModelFilter:
        """Check ``q`` (part of a name) and ``tag`` (``key=value``).

        Raises:
            ValidationError: Naming the field (``q`` or ``tag``).
        """
        name_part = None
        if q:
            if not isinstance(q, str) or len(q) > _QUERY_MAX:
                raise ValidationError(
                    f"q must be a string of at most {_QUERY_MAX} characters.",
                    details={"field": "q", "limit": _QUERY_MAX},
                )
            name_part = q.casefold()
        pair = None
        if tag is not None:
            key, sep, value = tag.partition("=") if isinstance(tag, str) else ("", "", "")
            if not sep or not key:
                raise ValidationError("tag must be written key=value.", details={"field": "tag"})
            try:
                pair = next(iter(validation.tags({key: value}).items()))
            except ValidationError as exc:
                raise ValidationError(
                    f"tag: {exc.message}", details={**exc.details, "field": "tag"}
                ) from None
        return cls(name_part, pair)

    @property
    def active(self) -> bool:
        return self.name_part is not None or self.tag is not None

    def matches(self, name: str, tags: dict[str, str] | None) -> bool:
        if self.name_part is not None and self.name_part not in name.casefold():
            return False
        if self.tag is not None:
            key, value = self.tag
            return (tags or {}).get(key) == value
        return True


class ModelLister:
    """Lists a tenant's models a page at a time.

    Args:
        client: The MLflow client.
        tenants: Scopes each call to its tenant.
    """

    def __init__(self, client: MlflowClient, tenants: TenantDirectory) -> None:
        self._client = client
        self._tenants = tenants

    def page(
        self,
        tenant_id: str,
        *,
        stage: str | None = None,
        framework: str | None = None,
        max_results: int = 100,
        page_token: str | None = None,
        q: str | None = None,
        tag: str | None = None,
    ) -> ModelPage:
        """Return one page of the tenant's models, ordered by name.

        Args:
            tenant_id: The tenant.
            stage: Keep models that have a version in this stage.
            framework: Keep models of this framework.
            max_results: The page's size (1 to 1000).
            page_token: From the previous page.
            q: Keep models whose name contains this, ignoring case (at most 128 characters).
            tag: ``key=value``: keep models with this user tag.

        The search itself is confined to the tenant; the name, tag and stage filters are
        applied to its results here, never written into a query. Filtered pages are
        filled from the models that follow, so a page holds ``max_results`` items unless
        the list ends, or a scan of ``_SCAN_BUDGET`` models found fewer (the token is
        what tells whether more follow).

        Raises:
            ValidationError: For a bad filter, size or token (``details.field`` names it).
        """
        want_stage = parse_stage(stage) if stage else None
        fw = frameworks.parse_framework(framework) if framework else None
        if not 1 <= max_results <= MAX_PAGE:
            raise ValidationError(
                f"max_results must be between 1 and {MAX_PAGE}.", details={"field": "max_results"}
            )
        page_token = validation.page_token(page_token)
        keep = ModelFilter.of(q, tag)
        engines = self._sql_engines()
        if engines is not None:
            return self._list_models_sql(
                engines, tenant_id, want_stage, fw, max_results, page_token, keep
            )
        filtered = want_stage is not None or keep.active
        with self._tenants.scope(tenant_id) as tenant:
            selected: list[RegisteredModel] = []
            token: str | None = page_token or None
            scanned = fetches = 0
            while True:
                # Never more than the room left: a page of MLflow's ends where ours does,
                # so its token is where the next page starts.
                with translated(bad_input=bool(token)):
                    models = self._client.search_registered_models(
                        filter_string=queries.FRAMEWORK_FILTER[fw] if fw else None,
                        max_results=max_results - len(selected),
                        order_by=["name ASC"],
                        page_token=token,
                    )
                selected.extend(
                    rm
                    for rm in models
                    if keep.matches(rm.name, rm.tags)
                    and (
                        want_stage is None
                        or any(stage_of(v) is want_stage for v in rm.latest_versions or [])
                    )
                )
                token = models.token
                # MLflow's registry store hands out its token as bytes, its tracking store
                # as str.
                if isinstance(token, bytes):
                    token = token.decode("ascii")
                scanned, fetches = scanned + len(models), fetches + 1
                if (
                    not filtered
                    or not token
                    or len(selected) >= max_results
                    or scanned >= _SCAN_BUDGET
                    or fetches >= _MAX_FETCHES
                ):
                    break
            return ModelPage(build_metadata(self._client, tenant, selected), token or None)

    def get(self, tenant_id: str, name: str) -> ModelMetadata | None:
        """Return one model of the tenant, the same as its item in :meth:`page`; None if
        the tenant has no model of that name.

        On the SQL stores, in a few queries of our own confined to the tenant's workspace
        (the ones :meth:`page` makes); otherwise through MLflow's client.

        Args:
            tenant_id: The tenant.
            name: The model's name, checked by the caller (``validation.model_name``).

        Raises:
            NotFoundError: For an unknown tenant.
        """
        engines = self._sql_engines()
        with self._tenants.scope(tenant_id) as tenant:
            if engines is None:
                try:
                    with translated(f"Model {name!r}"):
                        rm = self._client.get_registered_model(name)
                except NotFoundError:
                    return None
                return build_metadata(self._client, tenant, [rm])[0]
            models, runs = engines
            row = model_reads.model_named(models, tenant, name)
            if row is None:
                return None
            live = model_reads.versions(models, tenant, [row.name])
            return _assemble(runs, tenant, [row], live)[0]

    def _sql_engines(self) -> tuple[Engine, Engine] | None:
        """The engines of the registry's tables and of the runs', when both stores are SQL.

        They differ when ``MLFLOW_REGISTRY_URI`` names another database than the tracking
        store's.
        """
        models = stores.registry_sql_engine(self._client)
        runs = stores.sql_engine(self._client)
        return None if models is None or runs is None else (models, runs)

    def _list_models_sql(
        self,
        engines: tuple[Engine, Engine],
        tenant_id: str,
        want_stage: Stage | None,
        fw: frameworks.Framework | None,
        max_results: int,
        page_token: str | None,
        keep: ModelFilter,
    ) -> ModelPage:
        """:meth:`page` in a few queries of our own (the SQL stores)."""
        engine, runs = engines
        offset = model_reads.parse_token(page_token)
        filtered = want_stage is not None or keep.active
        # Filtered, the models are read in larger chunks: most may be left out.
        chunk = max(max_results, _FILTER_CHUNK) if filtered else max_results
        with self._tenants.scope(tenant_id) as tenant:
            picked: list[model_reads.ModelRow] = []
            live: list[model_reads.VersionRow] = []
            scanned = 0
            while True:
                rows, more = model_reads.model_page(
                    engine,
                    tenant,
                    limit=chunk,
                    offset=offset,
                    tagged=(TAG_FRAMEWORK, fw.value) if fw else None,
                )
                kept = [m for m in rows if keep.matches(m.name, m.tags)]
                found = model_reads.versions(engine, tenant, [m.name for m in kept])
                if want_stage is not None:
                    staged = {v.name for v in found if is_complete(v) and stage_of(v) is want_stage}
                    kept = [m for m in kept if m.name in staged]
                room = max_results - len(picked)
                if len(kept) > room:
                    # The page is full within this chunk: the next starts after its last.
                    kept = kept[:room]
                    offset += rows.index(kept[-1]) + 1
                    more = True
                else:
                    offset += len(rows)
                picked.extend(kept)
                names = {m.name for m in kept}
                live.extend(v for v in found if v.name in names)
                scanned += len(rows)
                if not more or len(picked) >= max_results or scanned >= _SCAN_BUDGET:
                    break
            items = _assemble(runs, tenant, picked, live)
        token = model_reads.make_token(offset) if more else None
        return ModelPage(items, token)


def _assemble(
    runs: Engine,
    tenant: str,
    models: list[model_reads.ModelRow],
    live: list[model_reads.VersionRow],
) -> list[ModelMetadata]:
    """The metadata of models read in SQL, their current versions' runs read from ``runs``."""

    def read_runs(run_ids: list[str]) -> dict[str, tuple[dict, dict]]:
        found = summaries(runs, tenant, run_ids, None)
        return {rid: (r.metrics, r.params) for rid, r in found.items()}

    return assemble_metadata(tenant, models, live, read_runs)
