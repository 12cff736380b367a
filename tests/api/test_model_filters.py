"""The models list's search and filters (q, tag, stage, framework) over HTTP: what they
keep, how they page, what they refuse, and that they never reach another tenant."""

from __future__ import annotations

import pytest

from api.helpers import error, ok, run_with_model
from conftest import ApiTenant, new_tenant_id

MODELS = "/api/v1/models"


def _names(response) -> list[str]:
    return [m["name"] for m in ok(response)["items"]]


@pytest.fixture(scope="module")
def acme(api, services):
    # One tenant and one catalog for the module: the tests only read it.
    t = ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id("flt")).tenant_id)
    yield t
    t.close()


@pytest.fixture(scope="module")
def catalog(acme, saved_sklearn_model) -> dict[str, dict[str, str]]:
    """Five models of acme's from one run; two in staging; tags on some."""
    run_id = run_with_model(acme.editor, saved_sklearn_model)
    tags = {
        "churn-eu": {"team": "growth"},
        "Churn-US": {"team": "growth", "region": "us"},
        "fraud": {"team": "risk"},
        "ltv": {},
        "xchurnx": {"team": "growth=core"},
    }
    for name, t in tags.items():
        ok(acme.editor.post(MODELS, json={"name": name, "run_id": run_id, "tags": t}), 201)
    for name in ("Churn-US", "fraud"):
        ok(acme.editor.put(f"{MODELS}/{name}/stage", json={"version": "1", "stage": "staging"}))
    return tags


def test_q_is_a_case_insensitive_part_of_the_name(acme, catalog) -> None:
    assert _names(acme.viewer.get(MODELS, params={"q": "CHURN"})) == [
        "Churn-US",
        "churn-eu",
        "xchurnx",
    ]
    assert _names(acme.viewer.get(MODELS, params={"q": "-us"})) == ["Churn-US"]
    assert _names(acme.viewer.get(MODELS, params={"q": "nothing"})) == []
    # Characters with a meaning in SQL or in MLflow's filter language are just text.
    for q in ("%", "_", "'", "name LIKE '%'", "\\"):
        assert _names(acme.viewer.get(MODELS, params={"q": q})) == [], q
    assert len(_names(acme.viewer.get(MODELS, params={"q": ""}))) == 5


def test_tag_is_an_exact_key_and_value(acme, catalog) -> None:
    assert _names(acme.viewer.get(MODELS, params={"tag": "team=growth"})) == [
        "Churn-US",
        "churn-eu",
    ]
    assert _names(acme.viewer.get(MODELS, params={"tag": "team=growth=core"})) == ["xchurnx"]
    assert _names(acme.viewer.get(MODELS, params={"tag": "region=us"})) == ["Churn-US"]
    assert _names(acme.viewer.get(MODELS, params={"tag": "team=Growth"})) == []
    assert _names(acme.viewer.get(MODELS, params={"tag": "team="})) == []


def test_filters_combine(acme, catalog) -> None:
    both = {"q": "churn", "tag": "team=growth", "stage": "staging"}
    assert _names(acme.viewer.get(MODELS, params=both)) == ["Churn-US"]
    assert _names(acme.viewer.get(MODELS, params={"stage": "staging"})) == ["Churn-US", "fraud"]
    assert _names(acme.viewer.get(MODELS, params={"q": "churn", "framework": "sklearn"})) == [
        "Churn-US",
        "churn-eu",
        "xchurnx",
    ]
    assert _names(acme.viewer.get(MODELS, params={"q": "churn", "framework": "onnx"})) == []


def test_filtered_pages_are_full_and_the_token_goes_on(acme, catalog) -> None:
    seen, token, pages = [], None, 0
    while True:
        params = {"q": "u", "max_results": 1}
        if token:
            params["page_token"] = token
        page = ok(acme.viewer.get(MODELS, params=params))
        pages += 1
        assert len(page["items"]) <= 1
        seen += [m["name"] for m in page["items"]]
        token = page["next_page_token"]
        if not token:
            break
    # One match a page, and no page is empty while more follow.
    assert seen == ["Churn-US", "churn-eu", "fraud", "xchurnx"]
    assert pages == 4
    first = ok(acme.viewer.get(MODELS, params={"tag": "team=growth", "max_results": 1}))
    assert [m["name"] for m in first["items"]] == ["Churn-US"] and first["next_page_token"]
    second = ok(
        acme.viewer.get(
            MODELS,
            params={
                "tag": "team=growth",
                "max_results": 1,
                "page_token": first["next_page_token"],
            },
        )
    )
    assert [m["name"] for m in second["items"]] == ["churn-eu"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "x" * 129}, "q"),
        ({"tag": "team"}, "tag"),
        ({"tag": "=growth"}, "tag"),
        ({"tag": "bad key!=x"}, "tag"),
        ({"tag": "a/../b=x"}, "tag"),
        ({"tag": "matih.framework=sklearn"}, "tag"),
        ({"tag": "k" * 251 + "=x"}, "tag"),
        ({"tag": "team=" + "v" * 5001}, "tag"),
    ],
)
def test_bad_filters_are_422_naming_the_field(acme, params, field) -> None:
    err = error(acme.viewer.get(MODELS, params=params), 422, "VALIDATION_ERROR")
    fields = [p["field"] for p in err["details"].get("problems", [])]
    fields.append(err["details"].get("field", ""))
    assert any(f == field or f.endswith(f".{field}") for f in fields), err


def test_another_tenants_models_never_appear(acme, globex, catalog, saved_sklearn_model) -> None:
    run_id = run_with_model(globex.editor, saved_sklearn_model)
    ok(
        globex.editor.post(
            MODELS, json={"name": "churn-globex", "run_id": run_id, "tags": {"team": "growth"}}
        ),
        201,
    )
    for params in ({}, {"q": "churn"}, {"tag": "team=growth"}, {"q": "churn-eu"}):
        names = _names(globex.viewer.get(MODELS, params=params))
        assert names == (["churn-globex"] if params != {"q": "churn-eu"} else []), params
        assert "churn-globex" not in _names(acme.viewer.get(MODELS, params=params))
    # A token from acme's list pages globex's list, not acme's.
    first = ok(acme.viewer.get(MODELS, params={"q": "churn", "max_results": 1}))
    other = ok(
        globex.viewer.get(
            MODELS, params={"q": "churn", "max_results": 1, "page_token": first["next_page_token"]}
        )
    )
    assert all(m["tenant_id"] == globex.tenant_id for m in other["items"])


def test_the_same_filters_through_a_store_that_is_not_sql(
    acme, catalog, services, monkeypatch
) -> None:
    # A remote MLflow server: MLflow's own search, its tokens, the same answers.
    monkeypatch.setattr("matih_ml.mlflow_adapter.stores.sql_engine", lambda client: None)
    assert _names(acme.viewer.get(MODELS, params={"q": "CHURN"})) == [
        "Churn-US",
        "churn-eu",
        "xchurnx",
    ]
    assert _names(acme.viewer.get(MODELS, params={"tag": "team=growth", "q": "us"})) == ["Churn-US"]
    seen, token = [], None
    while True:
        params = {"tag": "team=growth", "max_results": 1}
        if token:
            params["page_token"] = token
        page = ok(acme.viewer.get(MODELS, params=params))
        seen += [m["name"] for m in page["items"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == ["Churn-US", "churn-eu"]


def test_a_version_with_its_model_card(acme, catalog, globex) -> None:
    plain = ok(acme.viewer.get(f"{MODELS}/fraud/versions/1"))
    assert plain["model_card"] is None and plain["version"] == "1"
    v = ok(acme.viewer.get(f"{MODELS}/fraud/versions/1", params={"with_card": "true"}))
    assert v["model_card"].startswith("# Model card: fraud v1")
    error(globex.viewer.get(f"{MODELS}/fraud/versions/1", params={"with_card": "true"}), 404)
