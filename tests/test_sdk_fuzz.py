"""Property-based fuzzing of the Python SDK with hypothesis.

Whatever a caller passes (unicode and control characters in names, ``../`` in paths,
NaN and infinity, negative or huge steps, values of the wrong type), the SDK either
does what was asked or raises :class:`ValidationError`, and then has written nothing.
No other exception escapes, and MLflow never sees the bad input.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matih_ml.errors import ValidationError
from matih_ml.tenancy import tenant_scope, validate_tenant_id
from matih_ml.tracking import RunConfig

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

# Text that tends to break things: path tricks, quotes for filter strings, control
# characters, and far-away unicode.
nasty_text = st.one_of(
    st.text(max_size=300),
    st.sampled_from(
        ["", " ", "..", "../x", "a/../../b", "/abs", "a\x00b", "it's", 'a"b', "x" * 300, "é"]
    ),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x1F), max_size=5),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([True, None, "1.0", [1.0]]),
)
steps = st.one_of(st.none(), st.integers(min_value=-(2**70), max_value=2**70), st.just("3"))


@pytest.fixture(scope="module")
def fuzz_run(tracker, tenants):
    from conftest import new_tenant_id

    tenant = tenants.create_tenant(new_tenant_id("fz")).tenant_id
    with tracker.start_run("fuzz", RunConfig(tenant_id=tenant)) as run:
        yield run, tenant


def _state(tracker, tenant: str, run_id: str) -> tuple[dict, dict, list]:
    client = tracker.backend.client
    with tenant_scope(tenant):
        data = client.get_run(run_id).data
        files = [f.path for f in client.list_artifacts(run_id)]
    return dict(data.metrics), dict(data.params), files


@FUZZ
@given(key=nasty_text, value=numbers, step=steps)
def test_log_metrics_logs_or_refuses_and_writes_nothing(fuzz_run, tracker, key, value, step):
    run, tenant = fuzz_run
    before = _state(tracker, tenant, run.run_id)
    try:
        run.log_metrics({key: value}, step=step)
    except ValidationError as exc:
        assert exc.message
        assert _state(tracker, tenant, run.run_id) == before
        return
    assert isinstance(value, int | float) and math.isfinite(value)
    run.flush()  # buffered: stored once flushed
    assert _state(tracker, tenant, run.run_id)[0].get(key) is not None


@FUZZ
@given(params=st.dictionaries(nasty_text, st.one_of(nasty_text, numbers), max_size=3))
def test_log_params_logs_or_refuses_and_writes_nothing(fuzz_run, tracker, params):
    run, tenant = fuzz_run
    before = _state(tracker, tenant, run.run_id)
    try:
        run.log_params(params)
    except ValidationError:
        assert _state(tracker, tenant, run.run_id) == before
        return
    after = _state(tracker, tenant, run.run_id)[1]
    assert set(params) <= set(after)


@FUZZ
@given(path=nasty_text)
def test_artifact_paths_never_leave_the_run(fuzz_run, tracker, tmp_path_factory, path):
    run, tenant = fuzz_run
    local = tmp_path_factory.mktemp("f") / "f.txt"
    local.write_text("x")
    before = _state(tracker, tenant, run.run_id)
    try:
        run.log_artifact(local, path)
    except ValidationError:
        assert _state(tracker, tenant, run.run_id) == before
        return
    assert ".." not in path.split("/") and not path.startswith("/")


@FUZZ
@given(name=nasty_text)
def test_tenant_ids_are_checked(name):
    try:
        assert validate_tenant_id(name) == name
    except ValidationError:
        return
    assert name.isascii() and name == name.lower() and ".." not in name


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(name=nasty_text, metrics=st.dictionaries(nasty_text, numbers, max_size=2))
def test_register_model_registers_or_refuses_and_creates_nothing(
    registry, tenant, sk_model, name, metrics
):
    before = [m.name for m in registry.list_models(tenant)]
    try:
        registry.register_model(tenant, name, sk_model, "sklearn", metrics, {})
    except ValidationError:
        assert [m.name for m in registry.list_models(tenant)] == before
        return
    assert name in [m.name for m in registry.list_models(tenant)]
