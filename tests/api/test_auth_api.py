"""Credentials: API keys and JWTs; the tenant comes from the credential only."""

import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api.helpers import error, ok, register
from conftest import LiveServer, new_tenant_id
from matih_ml.api.app import create_app
from matih_ml.auth.jwt_tokens import JwtVerifier

SECRET = "test-hs256-secret-that-is-long-enough-0123456789"


def test_no_credential_is_401(api) -> None:
    err = error(httpx.get(f"{api.url}/api/v1/models"), 401, "UNAUTHENTICATED")
    assert "Bearer" in err["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer mk_0000000000000000_wrong"},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-API-Key": "mk_short_x"},
        {"X-API-Key": ""},
    ],
)
def test_bad_credentials_are_401(api, headers) -> None:
    error(httpx.get(f"{api.url}/api/v1/models", headers=headers), 401)


def test_a_wrong_secret_for_a_real_key_id_is_401(api, acme) -> None:
    prefix = "_".join(acme.keys["viewer"].split("_", 2)[:2])
    error(
        httpx.get(f"{api.url}/api/v1/models", headers={"Authorization": f"Bearer {prefix}_forged"}),
        401,
    )


def test_x_api_key_header_works(api, acme) -> None:
    r = httpx.get(f"{api.url}/api/v1/models", headers={"X-API-Key": acme.keys["viewer"]})
    assert ok(r) == {"items": [], "next_page_token": None}


def test_tenant_headers_and_params_cannot_choose_the_tenant(api, acme, globex) -> None:
    ok(globex.editor.post("/api/v1/runs", json={"experiment_name": "secret-exp"}), 201)
    for extra in ({"X-Tenant-Id": globex.tenant_id}, {"X-MLflow-Workspace": globex.tenant_id}):
        r = acme.viewer.get(
            "/api/v1/experiments", headers=extra, params={"tenant_id": globex.tenant_id}
        )
        assert ok(r)["items"] == []


def test_keys_are_stored_only_as_salted_hashes(services, acme) -> None:
    from sqlalchemy import select

    from matih_ml.store.models import ApiKeyRow

    with services.db.uow(tenant=acme.tenant_id) as s:
        rows = s.scalars(select(ApiKeyRow).where(ApiKeyRow.tenant_id == acme.tenant_id)).all()
    secrets = [k.split("_", 2)[2] for k in acme.keys.values()]
    assert len(rows) == 4 and len({r.salt for r in rows}) == 4
    for row in rows:
        assert all(s not in row.secret_hash and s not in row.salt for s in secrets)


def test_key_management_by_admin(acme, api) -> None:
    created = ok(acme.admin.post("/api/v1/keys", json={"role": "viewer", "name": "ci"}), 201)
    assert created["key"].startswith("mk_") and created["tenant_id"] == acme.tenant_id
    listed = ok(acme.admin.get("/api/v1/keys"))["items"]
    assert "key" not in listed[0] and created["key_id"] in [k["key_id"] for k in listed]
    with httpx.Client(base_url=api.url, headers={"X-API-Key": created["key"]}) as c:
        ok(c.get("/api/v1/models"))
        ok(acme.admin.delete(f"/api/v1/keys/{created['key_id']}"))
        error(c.get("/api/v1/models"), 401)
    error(acme.admin.post("/api/v1/keys", json={"role": "root"}), 422)
    error(acme.admin.delete("/api/v1/keys/0000000000000000"), 404)
    for role in ("viewer", "editor", "approver"):
        error(getattr(acme, role).post("/api/v1/keys", json={"role": "admin"}), 403, "FORBIDDEN")
        error(getattr(acme, role).get("/api/v1/keys"), 403)


def test_another_tenants_key_cannot_be_revoked(acme, globex) -> None:
    other = ok(globex.admin.post("/api/v1/keys", json={"role": "viewer"}), 201)
    error(acme.admin.delete(f"/api/v1/keys/{other['key_id']}"), 404)
    assert other["key_id"] not in [k["key_id"] for k in ok(acme.admin.get("/api/v1/keys"))["items"]]
    assert ok(globex.admin.get("/api/v1/keys"))["items"][-1]["revoked_at"] is None


def test_key_names_are_unique_per_tenant_and_default_names_never_repeat(acme, globex) -> None:
    first = ok(acme.admin.post("/api/v1/keys", json={"role": "admin"}), 201)
    second = ok(acme.admin.post("/api/v1/keys", json={"role": "admin"}), 201)
    assert first["name"] != second["name"] and first["name"].startswith("admin-key-")
    # No owner given: each key is its own owner, so two unnamed keys are two people.
    assert (first["owner"], second["owner"]) == (first["name"], second["name"])
    same = {"role": "viewer", "name": first["name"]}
    err = error(acme.admin.post("/api/v1/keys", json=same), 409, "CONFLICT")
    assert first["name"] in err["message"] and err["details"]["field"] == "name"
    # A revoked key's name stays taken (history names it); another tenant may use it.
    ok(acme.admin.delete(f"/api/v1/keys/{first['key_id']}"))
    error(acme.admin.post("/api/v1/keys", json=same), 409, "CONFLICT")
    ok(globex.admin.post("/api/v1/keys", json=same), 201)


def test_duplicate_key_names_are_refused_by_the_store_too(services, acme) -> None:
    from matih_ml.errors import ConflictError

    services.api_keys.create(acme.tenant_id, "viewer", "twice")
    with pytest.raises(ConflictError, match="twice"):
        services.api_keys.create(acme.tenant_id, "admin", " twice ")
    assert [k.name for k in services.api_keys.list(acme.tenant_id)].count("twice") == 1


def test_a_key_belongs_to_an_owner(api, acme) -> None:
    body = {"role": "viewer", "name": "alice-laptop", "owner": "alice@example.com"}
    created = ok(acme.admin.post("/api/v1/keys", json=body), 201)
    assert created["owner"] == "alice@example.com" and created["created_by"] == "admin-key"
    listed = {k["name"]: k for k in ok(acme.admin.get("/api/v1/keys"))["items"]}
    assert listed["alice-laptop"]["owner"] == "alice@example.com"
    with httpx.Client(base_url=api.url, headers={"X-API-Key": created["key"]}) as c:
        me = ok(c.get("/api/v1/whoami"))
    assert (me["subject"], me["owner"], me["via"]) == (
        "alice-laptop",
        "alice@example.com",
        "api_key",
    )
    for bad in ({"name": "a\nb"}, {"name": "nul\x00"}, {"owner": "x\ty"}, {"owner": "o" * 257}):
        error(acme.admin.post("/api/v1/keys", json={"role": "viewer", **bad}), 422)


# ------------------------------------------------------------------------- JWTs


def _token(key, alg: str, tenant: str, roles, **extra) -> str:
    claims = {
        "sub": "alice",
        "tenant_id": tenant,
        "roles": roles,
        "exp": int(time.time()) + 300,
        **extra,
    }
    headers = {"kid": "k1"} if alg == "RS256" else None
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


@pytest.fixture(scope="module")
def rsa_pair(tmp_path_factory):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    folder = tmp_path_factory.mktemp("jwt")
    (folder / "pub.pem").write_bytes(pem)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    (folder / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256"}]}))
    return private, folder


@pytest.fixture(scope="module")
def jwt_api(services, rsa_pair):
    """A second server on the same stores, with HS256 and RS256 (JWKS) configured."""
    from dataclasses import replace

    _, folder = rsa_pair
    settings = services.settings.model_copy(
        update={
            "jwt_secret": SECRET,
            "jwt_jwks_file": folder / "jwks.json",
            "jwt_public_key_file": folder / "pub.pem",
        }
    )
    verifier = JwtVerifier(settings, tenant_exists=services.tenants.exists)
    server = LiveServer(create_app(services=replace(services, settings=settings, jwt=verifier)))
    yield server
    server.stop()


def test_hs256_and_rs256_tokens(jwt_api, rsa_pair, services) -> None:
    private, _ = rsa_pair
    tenant = services.tenants.create_tenant(new_tenant_id("jwt")).tenant_id
    for key, alg in ((SECRET, "HS256"), (private, "RS256")):
        token = _token(key, alg, tenant, ["editor"])
        h = {"Authorization": f"Bearer {token}"}
        run = ok(
            httpx.post(
                f"{jwt_api.url}/api/v1/runs", headers=h, json={"experiment_name": f"e-{alg}"}
            ),
            201,
        )
        assert run["tags"]["matih.tenant_id"] == tenant and run["tags"]["matih.user_id"] == "alice"
    viewer = {"Authorization": f"Bearer {_token(SECRET, 'HS256', tenant, 'viewer')}"}
    error(
        httpx.post(f"{jwt_api.url}/api/v1/runs", headers=viewer, json={"experiment_name": "e"}), 403
    )
    assert len(ok(httpx.get(f"{jwt_api.url}/api/v1/experiments", headers=viewer))["items"]) == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda t: _token("wrong-secret-wrong-secret-wrong-secret!!", "HS256", t, ["admin"]),
        lambda t: _token(SECRET, "HS256", t, ["admin"], exp=int(time.time()) - 10),
        lambda t: _token(SECRET, "HS256", "Not A Tenant", ["admin"]),
        lambda t: jwt.encode({"sub": "a", "tenant_id": t, "roles": ["admin"]}, SECRET, "HS256"),
        lambda t: jwt.encode(
            {"sub": "a", "tenant_id": t, "roles": ["admin"], "exp": 9999999999},
            None,
            algorithm="none",
        ),
        lambda t: "a.b.c",
    ],
)
def test_bad_tokens_are_401(jwt_api, services, make) -> None:
    tenant = services.tenants.create_tenant(new_tenant_id("jwt")).tenant_id
    r = httpx.get(
        f"{jwt_api.url}/api/v1/models", headers={"Authorization": f"Bearer {make(tenant)}"}
    )
    error(r, 401)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "roles", [5, 1.5, None, True, [["admin"]], {"admin": True}, ["viewer", 1], ["admin", None]]
)
def test_a_malformed_roles_claim_is_401_and_the_connection_still_works(
    jwt_api, acme, roles
) -> None:
    bad = _bearer(_token(SECRET, "HS256", acme.tenant_id, roles))
    with httpx.Client(base_url=jwt_api.url) as c:
        for method, path, body in (
            ("GET", "/api/v1/models", None),
            ("GET", "/api/v1/keys", None),
            ("POST", "/api/v1/runs", {"experiment_name": "e"}),
        ):
            err = error(c.request(method, path, json=body, headers=bad), 401, "UNAUTHENTICATED")
            assert err["message"] == "The bearer token is not valid."
        # The same connection goes on serving.
        good = _bearer(_token(SECRET, "HS256", acme.tenant_id, ["viewer"]))
        ok(c.get("/api/v1/models", headers=good))


def test_roles_are_a_list_of_strings_or_a_space_separated_string(jwt_api, acme) -> None:
    for roles, expected in (
        ("viewer editor", ["editor", "viewer"]),
        (["approver", "not-ours"], ["approver"]),
        ([], []),
    ):
        token = _token(SECRET, "HS256", acme.tenant_id, roles)
        me = ok(httpx.get(f"{jwt_api.url}/api/v1/whoami", headers=_bearer(token)))
        assert me["roles"] == expected


def test_a_jwt_owner_is_its_issuer_and_subject(jwt_api, acme) -> None:
    token = _token(SECRET, "HS256", acme.tenant_id, ["viewer"], iss="https://idp.example")
    me = ok(httpx.get(f"{jwt_api.url}/api/v1/whoami", headers=_bearer(token)))
    assert (me["subject"], me["owner"], me["via"]) == ("alice", "https://idp.example:alice", "jwt")
    bare = _token(SECRET, "HS256", acme.tenant_id, ["viewer"])
    assert ok(httpx.get(f"{jwt_api.url}/api/v1/whoami", headers=_bearer(bare)))["owner"] == ":alice"
    base = {"sub": "alice", "tenant_id": acme.tenant_id, "exp": int(time.time()) + 300}
    for claims in ({"sub": 7}, {"sub": ""}, {"iss": ["a"]}, {"iss": 5}, {"iss": "i" * 300}):
        # Signed as given: PyJWT's encoder refuses some of these claims itself.
        bad = jwt.api_jws.PyJWS().encode(json.dumps({**base, **claims}).encode(), SECRET, "HS256")
        error(httpx.get(f"{jwt_api.url}/api/v1/whoami", headers=_bearer(bad)), 401)


def test_a_jwt_may_only_name_a_tenant_that_exists(jwt_api, services) -> None:
    ghost = new_tenant_id("ghost")
    assert services.settings.auto_create_tenants  # writes may provision tenants here
    unknown = _bearer(_token(SECRET, "HS256", ghost, ["admin"]))
    forged = _bearer(_token("another-secret-that-is-long-enough-012345", "HS256", ghost, ["admin"]))
    answers = []
    with httpx.Client(base_url=jwt_api.url) as c:
        for headers in (unknown, forged):
            for method, path, body in (
                ("GET", "/api/v1/models", None),
                ("GET", "/api/v1/experiments", None),
                ("POST", "/api/v1/runs", {"experiment_name": "e"}),
                ("POST", "/api/v1/models", {"name": "m", "run_id": "0" * 32}),
            ):
                r = c.request(method, path, json=body, headers=headers)
                answers.append(error(r, 401, "UNAUTHENTICATED"))
    # An unknown tenant reads exactly like a bad signature: nothing tells them apart.
    assert all(a == answers[0] for a in answers), answers
    assert answers[0]["message"] == "The bearer token is not valid."
    assert not services.tenants.exists(ghost)
    assert ghost not in [t.tenant_id for t in services.tenants.list_tenants()]


def test_four_eyes_compares_a_jwt_owner_with_a_key_owner(
    api, jwt_api, acme, services, saved_sklearn_model
) -> None:
    register(acme.editor, saved_sklearn_model)
    ok(acme.editor.put("/api/v1/models/churn/stage", json={"version": "1", "stage": "staging"}))
    idp = "https://idp.example"
    # Alice's CI key is owned by her identity at the identity provider.
    key = services.api_keys.create(acme.tenant_id, "editor", "alice-ci", owner=f"{idp}:alice")
    with httpx.Client(base_url=api.url, headers=_bearer(key.secret)) as c:
        req = ok(c.post("/api/v1/models/churn/versions/1/approvals", json={}), 201)
    assert req["requested_by"] == f"{idp}:alice"
    alice = _bearer(_token(SECRET, "HS256", acme.tenant_id, ["approver"], iss=idp))
    bob = _bearer(_token(SECRET, "HS256", acme.tenant_id, ["approver"], iss=idp, sub="bob"))
    with httpx.Client(base_url=jwt_api.url) as c:
        url = f"/api/v1/approvals/{req['id']}"
        err = error(c.post(f"{url}/approve", json={}, headers=alice), 403, "FORBIDDEN")
        assert "four eyes" in err["message"]
        error(c.post(f"{url}/reject", json={"reason": "no"}, headers=alice), 403, "FORBIDDEN")
        done = ok(c.post(f"{url}/approve", json={}, headers=bob))
    assert (done["status"], done["decided_by"]) == ("approved", f"{idp}:bob")


def test_tokens_are_refused_where_no_jwt_key_is_configured(api, services) -> None:
    tenant = services.tenants.create_tenant(new_tenant_id("jwt")).tenant_id
    token = _token(SECRET, "HS256", tenant, ["admin"])
    error(httpx.get(f"{api.url}/api/v1/models", headers={"Authorization": f"Bearer {token}"}), 401)


def test_a_key_revoked_on_another_replica_is_refused_within_the_cache_ttl(services, acme):
    from matih_ml.auth.api_keys import ApiKeyStore
    from matih_ml.errors import UnauthenticatedError

    here, there = ApiKeyStore(services.db, cache_ttl_s=0.3), ApiKeyStore(services.db)
    key = here.create(acme.tenant_id, "viewer", "short-lived")
    assert here.verify(key.secret).tenant_id == acme.tenant_id
    assert here.cached(key.secret) is not None
    there.revoke(acme.tenant_id, key.info.key_id)
    time.sleep(0.35)
    assert here.cached(key.secret) is None
    with pytest.raises(UnauthenticatedError):
        here.verify(key.secret)
    # Revoked through the same store: dropped at once.
    again = here.create(acme.tenant_id, "viewer", "again")
    here.verify(again.secret)
    here.revoke(acme.tenant_id, again.info.key_id)
    assert here.cached(again.secret) is None
