"""Tenants: named keys, jobs scoped to their tenant, admin keys for the operators' routes.

One stack serves three tenants: acme (two keys: a rotation), globex, and the default
tenant (a bare key); `ops` holds the admin key. Every job route is tried with each
tenant's key on the others' jobs. The key list's parsing is tested on its own, in-process.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from daemon.config import ConfigError, Settings, parse_access_keys
from devtools.stack import Stack, wait_for
from tests.client import Client, Reply
from tests.test_hostile import error_of

pytestmark = pytest.mark.slow

ACME_1 = "acme-key-one-0123456789abcdef"
ACME_2 = "acme-key-two-0123456789abcdef"
GLOBEX = "globex-key-0123456789abcdefgh"
BARE = "bare-key-0123456789abcdefghij"
OPS = "ops-key-0123456789abcdefghijk"
KEYS = (ACME_1, ACME_2, GLOBEX, BARE, OPS)
FOX = b"the quick brown fox jumps over the lazy dog"
MANAGEMENT = ["/metrics", "/status", "/health/detailed", "/v1/quarantine"]


@pytest.fixture(scope="module")
def tenants() -> Iterator[Stack]:
    stack = Stack(env={"API_KEY": f"acme:{ACME_1}, acme:{ACME_2},globex:{GLOBEX},{BARE}",
                       "ADMIN_API_KEY": f"ops:{OPS}", "WORKER_PROCESSES": "1",
                       "RESULT_TTL": "600"}).start()
    stack.api_key = ACME_1
    yield stack
    stack.discard()
    shutil.rmtree(stack.root, ignore_errors=True)


def done_job(stack: Stack, key: str, name: str = "fox.txt") -> str:
    reply = Client(stack, key=key).upload(name, FOX, wait=30)
    assert reply.status == 200 and reply.json()["state"] == "done", reply.body
    return reply.json()["id"]


def job_routes(client: Client, job_id: str) -> dict[str, Reply]:
    """Every job route on `job_id`, the deleting one last."""
    return {
        "get": client.job(job_id),
        "wait": client.job(job_id, wait=5),
        "text": client.request("GET", f"/v1/jobs/{job_id}/text"),
        "delete": client.request("DELETE", f"/v1/jobs/{job_id}"),
    }


# --- jobs are their tenant's -----------------------------------------------------------------
@pytest.mark.parametrize(("owner", "stranger"), [(ACME_1, GLOBEX), (GLOBEX, ACME_2),
                                                 (BARE, ACME_1), (ACME_1, BARE)],
                         ids=["acme-globex", "globex-acme", "default-acme", "acme-default"])
def test_another_tenants_job_is_a_404_on_every_route_as_if_it_did_not_exist(
        tenants: Stack, owner: str, stranger: str) -> None:
    job_id = done_job(tenants, owner)
    unknown = "0123456789abcdef0123456789abcdef"
    client = Client(tenants, key=stranger)
    for route, reply in job_routes(client, job_id).items():
        error = error_of(reply, 404, "not_found")
        # Word for word what an id that never existed gets: nothing to tell them apart.
        nothing = {"get": client.job(unknown), "wait": client.job(unknown, wait=5),
                   "text": client.request("GET", f"/v1/jobs/{unknown}/text"),
                   "delete": client.request("DELETE", f"/v1/jobs/{unknown}")}[route]
        assert error["message"].replace(job_id, "ID") == \
            error_of(nothing, 404, "not_found")["message"].replace(unknown, "ID"), route
    assert job_routes(client, job_id)["wait"].elapsed < 2  # refused, not waited on
    # The owner still has the job, its text included: the stranger's DELETE did nothing.
    own = Client(tenants, key=owner)
    assert own.job(job_id).json()["state"] == "done"
    assert own.request("GET", f"/v1/jobs/{job_id}/text").text == FOX.decode()


def test_the_keys_of_one_tenant_share_its_jobs(tenants: Stack) -> None:
    job_id = done_job(tenants, ACME_1)
    replies = job_routes(Client(tenants, key=ACME_2), job_id)
    assert replies["get"].status == 200 and replies["get"].json()["id"] == job_id
    assert replies["wait"].json()["state"] == "done"
    assert replies["text"].text == FOX.decode()
    assert replies["delete"].status == 204
    error_of(Client(tenants, key=ACME_1).job(job_id), 404, "not_found")


def test_a_job_waited_on_by_another_tenant_is_not_carried_to_it_when_it_finishes(
        tenants: Stack) -> None:
    queued = Client(tenants, key=GLOBEX).upload("fox.txt", FOX)
    assert queued.status == 202
    job_id = queued.json()["id"]
    error_of(Client(tenants, key=ACME_1).job(job_id, wait=10), 404, "not_found")
    finished = Client(tenants, key=GLOBEX).job(job_id, wait=30)
    assert finished.json()["state"] == "done"


# --- admin keys -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", MANAGEMENT)
@pytest.mark.parametrize("key", [ACME_1, GLOBEX, BARE], ids=["acme", "globex", "default"])
def test_a_tenant_key_gets_403_on_the_operators_routes(tenants: Stack, path: str,
                                                       key: str) -> None:
    reply = Client(tenants, key=key).request("GET", path)
    assert "admin" in error_of(reply, 403, "forbidden")["message"]


def test_the_admin_key_reads_the_operators_routes_and_health_stays_open(
        tenants: Stack) -> None:
    ops = Client(tenants, key=OPS)
    assert ops.request("GET", "/metrics").status == 200
    assert "requests" in ops.request("GET", "/metrics").json()
    assert ops.request("GET", "/status").status == 200
    assert ops.request("GET", "/v1/quarantine").json()["count"] == 0
    detailed = ops.request("GET", "/health/detailed")
    assert detailed.status in (200, 503) and "checks" in detailed.json()  # 503: a host check
    assert Client(tenants, key=None).request("GET", "/health").status == 200
    # An admin key is a tenant's key too, with jobs of its own.
    job_id = done_job(tenants, OPS)
    error_of(Client(tenants, key=ACME_1).job(job_id), 404, "not_found")


# --- logs --------------------------------------------------------------------------------------
def test_every_api_line_of_a_request_names_its_tenant_and_no_line_holds_a_key(
        tenants: Stack) -> None:
    job_id = Client(tenants, key=ACME_2).upload(
        "fox.txt", FOX, wait=30, headers={"X-Request-ID": "tenant-logged"}).json()["id"]
    Client(tenants, key=GLOBEX).request("GET", f"/v1/jobs/{job_id}",
                                        headers={"X-Request-ID": "tenant-refused"})

    def lines(request_id: str) -> list[dict]:
        return [e for e in tenants.log_events("api") if e.get("request_id") == request_id]

    wait_for(lambda: lines("tenant-refused"), 10, "the refused request's line")
    for request_id, tenant in (("tenant-logged", "acme"), ("tenant-refused", "globex")):
        events = lines(request_id)
        assert events and all(e.get("tenant") == tenant for e in events), events
    text = b"".join(p.read_bytes() for p in (tenants.root / "logs").glob("*.log"))
    for key in KEYS:
        assert key.encode() not in text
    with tenants.redis() as r:
        assert r.hget(f"textractd:job:{job_id}", "tenant") == b"acme"


def test_the_workers_summary_line_of_a_job_names_its_tenant(tenants: Stack) -> None:
    job_id = done_job(tenants, GLOBEX)

    def summary() -> dict | None:
        return next((e for e in tenants.log_events("workers")
                     if e.get("event") == "job.done" and e.get("job_id") == job_id), None)

    assert wait_for(summary, 10, "the job's summary line")["tenant"] == "globex"


# --- the key list ------------------------------------------------------------------------------
def test_bare_keys_are_the_default_tenant_and_its_keys_are_admin_without_admin_keys() -> None:
    keys = parse_access_keys(("k1", "acme:k2", " globex : k3 "))
    assert [(k.tenant, k.secret, k.admin) for k in keys] == [
        ("default", "k1", True), ("acme", "k2", False), ("globex", "k3", False)]


def test_admin_api_key_makes_only_its_keys_admin() -> None:
    keys = parse_access_keys(("k1", "acme:k2"), ("ops:k9", "acme:k2"))
    assert {k.secret: (k.tenant, k.admin) for k in keys} == {
        "k1": ("default", False), "k2": ("acme", True), "k9": ("ops", True)}


@pytest.mark.parametrize(("api_key", "admin_key"), [
    ("acme:secret-1,globex:secret-1", ""), ("acme:secret-1", "ops:secret-1"),
    ("bad name:secret-1", ""), ("acme:", ""), (":secret-1", "")],
    ids=["one-key-two-tenants", "admin-key-of-another-tenant", "bad-tenant-name",
         "no-key", "no-tenant"])
def test_a_malformed_key_list_is_refused_at_start_without_quoting_a_key(
        api_key: str, admin_key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"API_KEY": api_key, "ADMIN_API_KEY": admin_key,
                           "TEXTRACTD_HOME": "/nonexistent"})
    assert "secret-1" not in str(refused.value)
    assert "entry" in str(refused.value)
