"""`matih-ml serve` as a user starts it: a real process on a loopback port."""

import re

import httpx

from conftest import ServeProcess


def test_first_start_prints_an_admin_key_and_a_scrape_token_once(tmp_path) -> None:
    env = {"MATIH_DATA_DIR": str(tmp_path / "data")}
    first = ServeProcess(tmp_path / "first.log", env)
    try:
        key = re.search(r"mk_[0-9a-f]{16}_\S+", first.output()).group(0)
        h = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{first.url}/api/v1/models", headers=h).json() == {
            "items": [],
            "next_page_token": None,
        }
        created = httpx.post(f"{first.url}/api/v1/keys", headers=h, json={"role": "viewer"})
        assert created.status_code == 201 and created.json()["tenant_id"] == "demo"
        # /metrics opens for the scrape token printed beside the key, and only for it.
        scrape = re.search(r"curl -H 'Authorization: Bearer (\S+)' (\S+/metrics)", first.output())
        assert scrape and scrape.group(2) == f"{first.url}/metrics"
        metrics_h = {"Authorization": f"Bearer {scrape.group(1)}"}
        for headers in ({}, h):
            refused = httpx.get(f"{first.url}/metrics", headers=headers)
            assert (
                refused.status_code == 401 and refused.json()["error"]["code"] == "UNAUTHENTICATED"
            )
        assert httpx.get(f"{first.url}/metrics", headers=metrics_h).status_code == 200
    finally:
        first.stop()
    second = ServeProcess(tmp_path / "second.log", env)
    try:
        assert "mk_" not in second.output() and "/metrics" not in second.output()
        assert httpx.get(f"{second.url}/api/v1/models", headers=h).status_code == 200
        assert httpx.get(f"{second.url}/metrics", headers=metrics_h).status_code == 200
    finally:
        second.stop()
