"""Roles and isolation: who may act, and that other users' records answer 404."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import SHA, Api


@pytest.fixture
def two_operators(api: Api) -> dict[str, Any]:
    """Operators A and B, each in their own environment (granted by the admin), each with a
    service, an artifact and a deployment with logs."""
    out: dict[str, Any] = {}
    for who in ("alice", "bob"):
        token = api.user(who, "operator")
        api.ok(api.post("/environments", {"name": f"{who}-env"}), 201)
        api.ok(api.post(f"/environments/{who}-env/grants", {"user": who}), 204)
        me = api.as_(token)
        svc = me.ok(me.post("/services", {"environment": f"{who}-env", "name": f"{who}-web"}), 201)
        art = me.ok(
            me.post("/artifacts", {"service": svc["id"], "version": "v1.0.0", "commit_sha": SHA}),
            201,
        )
        dep = me.ok(me.post("/deployments", {"service": svc["id"], "version": "v1.0.0"}), 201)
        me.ok(me.post(f"/deployments/{dep['id']}/logs", {"message": f"{who} secret log"}), 201)
        out[who] = {"token": token, "service": svc, "artifact": art, "deployment": dep}
    return out


def test_user_b_gets_404_on_every_route_for_user_a_records(
    api: Api, two_operators: dict[str, Any]
) -> None:
    a = two_operators["alice"]
    bob = api.as_(two_operators["bob"]["token"])
    sid, aid, did = a["service"]["id"], a["artifact"]["id"], a["deployment"]["id"]
    attempts = [
        bob.get("/environments/alice-env"),
        bob.get(f"/services/{sid}"),
        bob.get("/services/alice-web"),
        bob.patch(f"/services/{sid}", {"image": "evil"}),
        bob.post(f"/services/{sid}/scale", {"target_replicas": 5}),
        bob.post(f"/services/{sid}/transition", {"to": "scheduled"}),
        bob.delete(f"/services/{sid}"),
        bob.get(f"/services/{sid}/replicas"),
        bob.get(f"/artifacts/{aid}"),
        bob.patch(f"/artifacts/{aid}", {"changelog": "x"}),
        bob.delete(f"/artifacts/{aid}"),
        bob.post("/artifacts", {"service": sid, "version": "v6.6.6", "commit_sha": SHA}),
        bob.get(f"/deployments/{did}"),
        bob.post(f"/deployments/{did}/transition", {"to": "building"}),
        bob.get(f"/deployments/{did}/logs"),
        bob.post(f"/deployments/{did}/logs", {"message": "x"}),
        bob.post(f"/deployments/{did}/logs/batch", {"lines": [{"message": "x"}]}),
        bob.post("/deployments", {"service": sid, "version": "v1.0.0"}),
        bob.get(f"/history/deployment/{did}"),
        bob.get(f"/history/service/{sid}"),
        bob.get("/deployments", params={"service": sid}),
        bob.get("/artifacts", params={"service": sid}),
        bob.get("/services", params={"environment": "alice-env"}),
        bob.post("/services", {"environment": "alice-env", "name": "sneaky"}),
    ]
    for response in attempts:
        assert response.status_code == 404, (
            response.request.method,
            response.request.url,
            response.text,
        )
        assert "alice secret log" not in response.text
    # Lists simply leave A's records out.
    assert [s["name"] for s in bob.ok(bob.get("/services"))] == ["bob-web"]
    assert [e["name"] for e in bob.ok(bob.get("/environments"))] == ["bob-env"]
    ids = [d["id"] for d in bob.ok(bob.get("/deployments"))["items"]]
    assert ids == [two_operators["bob"]["deployment"]["id"]]
    assert aid not in str(bob.ok(bob.get("/artifacts")))
    # And nothing of A's changed.
    mine = api.ok(api.get(f"/services/{sid}"))
    assert mine["target_replicas"] == 1 and mine["image"] is None and mine["status"] == "pending"


def test_grant_opens_an_environment_and_revoke_closes_it(
    api: Api, two_operators: dict[str, Any]
) -> None:
    bob = api.as_(two_operators["bob"]["token"])
    sid = two_operators["alice"]["service"]["id"]
    assert bob.get(f"/services/{sid}").status_code == 404
    api.ok(api.post("/environments/alice-env/grants", {"user": "bob"}), 204)
    assert bob.ok(bob.get(f"/services/{sid}"))["name"] == "alice-web"
    api.ok(api.delete("/environments/alice-env/grants/bob"), 204)
    assert bob.get(f"/services/{sid}").status_code == 404


def test_viewer_reads_but_may_not_act(api: Api, world: dict[str, Any]) -> None:
    token = api.user("vera", "viewer")
    api.ok(api.post("/environments/prod/grants", {"user": "vera"}), 204)
    vera = api.as_(token)
    sid = world["service"]["id"]
    assert vera.ok(vera.get(f"/services/{sid}"))["name"] == "web"
    assert vera.ok(vera.get("/deployments"))["items"] == []
    refused = [
        vera.post("/services", {"environment": "prod", "name": "x"}),
        vera.patch(f"/services/{sid}", {"image": "x"}),
        vera.post(f"/services/{sid}/scale", {"target_replicas": 2}),
        vera.delete(f"/services/{sid}"),
        vera.post("/artifacts", {"service": sid, "version": "v3.0.0", "commit_sha": SHA}),
        vera.post("/deployments", {"service": sid, "version": "v1.0.0"}),
        vera.post("/environments", {"name": "mine"}),
        vera.post("/users", {"name": "eve", "role": "admin"}),
        vera.get("/users"),
        vera.post("/tokens", {"name": "x"}),
        vera.get("/tokens"),
        vera.get("/audit"),
    ]
    for response in refused:
        assert response.status_code == 403, (response.request.url, response.text)
        assert "viewer" in response.json()["message"]


def test_operator_deploys_and_scales_but_does_not_administer(
    api: Api, world: dict[str, Any]
) -> None:
    token = api.user("otto", "operator")
    api.ok(api.post("/environments/prod/grants", {"user": "otto"}), 204)
    otto = api.as_(token)
    sid = world["service"]["id"]
    otto.ok(otto.post(f"/services/{sid}/scale", {"target_replicas": 3}))
    dep = otto.ok(otto.post("/deployments", {"service": sid, "version": "v1.0.0"}), 201)
    assert dep["operator"] == "otto"
    otto.ok(otto.post(f"/deployments/{dep['id']}/transition", {"to": "building"}))
    otto.ok(otto.post("/services", {"environment": "prod", "name": "worker"}), 201)
    for response in (
        otto.post("/environments", {"name": "mine"}),
        otto.patch("/environments/prod", {"domain": "x.org"}),
        otto.delete("/environments/prod"),
        otto.post("/environments/prod/grants", {"user": "otto"}),
        otto.post("/users", {"name": "eve", "role": "admin"}),
        otto.post("/tokens", {"name": "x"}),
        otto.get("/tokens"),
    ):
        assert response.status_code == 403, (response.request.url, response.text)


def test_admin_manages_users_and_tokens(api: Api) -> None:
    created = api.ok(api.post("/users", {"name": "ann", "role": "admin", "with_token": False}), 201)
    assert created["token"] is None
    assert api.post("/users", {"name": "ann", "role": "viewer"}).status_code == 409
    bad = api.post("/users", {"name": "x", "role": "root"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "role"
    token = api.ok(api.post("/tokens", {"user": "ann", "name": "laptop"}), 201)
    ann = api.as_(token["token"])
    assert ann.ok(ann.get("/users/me"))["name"] == "ann"
    names = {u["name"] for u in api.ok(api.get("/users"))}
    assert names == {"admin", "ann"}


def test_token_values_never_appear_in_reads_or_audit(api: Api) -> None:
    token = api.user("tess", "viewer")
    issued = api.ok(api.post("/tokens", {"user": "tess"}), 201)
    for path in ("/users", "/tokens", "/audit"):
        body = api.get(path).text
        assert token not in body and issued["token"] not in body
    assert issued["token"][10:] not in api.get("/tokens").text


HOST_CHANGES = [
    ("create with a command", "post", {"name": "x1", "command": "cat /etc/shadow"}),
    (
        "create with a build command",
        "post",
        {"name": "x2", "driver_config": {"build_command": "id"}},
    ),
    ("patch the command", "patch", {"command": "sh -c id"}),
    ("patch the migration command", "patch", {"driver_config": {"migration_command": "id"}}),
    ("patch a deploy script", "patch", {"driver_config": {"deploy_command": "id"}}),
    ("patch the working directory", "patch", {"driver_config": {"cwd": "/root"}}),
    ("patch driver variables", "patch", {"driver_config": {"env": {"LD_PRELOAD": "/x"}}}),
    ("patch an unknown driver key", "patch", {"driver_config": {"hook": "id"}}),
]


@pytest.mark.parametrize(
    ("label", "method", "body"), HOST_CHANGES, ids=[c[0] for c in HOST_CHANGES]
)
def test_only_an_admin_defines_what_runs_on_the_host(
    api: Api, world: dict[str, Any], label: str, method: str, body: dict[str, Any]
) -> None:
    token = api.user("otto", "operator")
    api.ok(api.post("/environments/prod/grants", {"user": "otto"}), 204)
    otto = api.as_(token)
    sid = world["service"]["id"]
    if method == "post":
        response = otto.post("/services", {"environment": "prod", **body})
    else:
        response = otto.patch(f"/services/{sid}", body)
    assert response.status_code == 403, response.text
    error = response.json()
    assert "operator" in error["message"] and "'admin'" in error["message"], error
    assert error["detail"]["action"] == "define_commands"
    # the admin may; and the operator keeps what operators do
    if method == "post":
        api.ok(api.post("/services", {"environment": "prod", **body}), 201)
    else:
        api.ok(api.patch(f"/services/{sid}", body))


def test_operator_tunes_rollouts_without_touching_commands(api: Api, world: dict[str, Any]) -> None:
    token = api.user("otto", "operator")
    api.ok(api.post("/environments/prod/grants", {"user": "otto"}), 204)
    otto = api.as_(token)
    sid = world["service"]["id"]
    api.ok(api.patch(f"/services/{sid}", {"driver_config": {"build_command": "make"}}))
    # the same command sent back unchanged, with tuning keys, is an operator's change
    tuned = {"build_command": "make", "max_surge": 2, "grace_seconds": 3}
    assert otto.ok(otto.patch(f"/services/{sid}", {"driver_config": tuned}))["driver_config"] == (
        tuned
    )
    assert otto.ok(otto.patch(f"/services/{sid}", {"command": world["service"]["command"]}))
    otto.ok(otto.post("/services", {"environment": "prod", "name": "plain", "image": "x:1"}), 201)
    # removing a command is a change of what runs, too
    assert otto.patch(f"/services/{sid}", {"driver_config": {"max_surge": 2}}).status_code == 403


def _go_live(api: Api, dep: dict[str, Any]) -> None:
    for step in ("building", "deploying", "success"):
        api.ok(api.post(f"/deployments/{dep['id']}/transition", {"to": step}))


def test_deployer_registers_deploys_and_rolls_back_in_its_environments_only(
    api: Api, world: dict[str, Any]
) -> None:
    issued = api.ok(api.post("/users", {"name": "ci", "role": "deployer"}), 201)["token"]
    assert issued["expires_at"] is not None  # a deployer's token always expires
    api.ok(api.post("/environments", {"name": "other"}), 201)
    other = api.ok(api.post("/services", {"environment": "other", "name": "api"}), 201)
    ci = api.as_(issued["token"])
    sid = world["service"]["id"]
    # nothing is visible before a grant
    assert ci.get(f"/services/{sid}").status_code == 404
    api.ok(api.post("/environments/prod/grants", {"user": "ci"}), 204)

    art = ci.ok(
        ci.post("/artifacts", {"service": sid, "version": "v2.0.0", "commit_sha": SHA}), 201
    )
    first = ci.ok(ci.post("/deployments", {"service": sid, "version": "v1.0.0"}), 201)
    _go_live(api, first)
    second = ci.ok(ci.post("/deployments", {"service": sid, "version": "v2.0.0"}), 201)
    assert second["operator"] == "ci"
    _go_live(api, second)
    back = ci.ok(ci.post(f"/services/{sid}/rollback", {}), 201)
    assert back["event_type"] == "rollback" and back["version"] == "v1.0.0"
    assert ci.ok(ci.get(f"/deployments/{back['id']}"))["id"] == back["id"]

    forbidden = [
        ci.post(f"/services/{sid}/scale", {"target_replicas": 2}),
        ci.patch(f"/services/{sid}", {"image": "x"}),
        ci.post("/services", {"environment": "prod", "name": "x"}),
        ci.delete(f"/services/{sid}"),
        ci.post(f"/services/{sid}/stop", {}),
        ci.post(f"/deployments/{back['id']}/transition", {"to": "building"}),
        # a deployer deploys and rolls back, nothing else (not restart, config_update, scale)
        ci.post("/deployments", {"service": sid, "version": "v1.0.0", "event_type": "restart"}),
        ci.post(
            "/deployments", {"service": sid, "version": "v1.0.0", "event_type": "config_update"}
        ),
        ci.post("/deployments", {"service": sid, "version": "v1.0.0", "event_type": "scale"}),
        ci.patch(f"/artifacts/{art['id']}", {"changelog": "x"}),
        ci.delete(f"/artifacts/{art['id']}"),
        ci.client.put(
            "/api/v1/environments/prod/vars/X", json={"value": "1"}, headers=ci._headers()
        ),
        ci.post("/environments", {"name": "mine"}),
        ci.post("/tokens", {"name": "x"}),
        ci.get("/audit"),
    ]
    for response in forbidden:
        assert response.status_code == 403, (response.request.url, response.text)
        assert "deployer" in response.json()["message"]
    # another environment stays invisible, whatever the action
    for response in (
        ci.get(f"/services/{other['id']}"),
        ci.post("/artifacts", {"service": other["id"], "version": "v1.0.0", "commit_sha": SHA}),
        ci.post("/deployments", {"service": other["id"], "version": "v1.0.0"}),
    ):
        assert response.status_code == 404, (response.request.url, response.text)


def test_deployer_tokens_expire(api: Api) -> None:
    api.ok(api.post("/users", {"name": "ci", "role": "deployer", "with_token": False}), 201)
    too_long = api.post("/tokens", {"user": "ci", "expires_in_days": 400})
    assert (
        too_long.status_code == 422 and too_long.json()["detail"][0]["field"] == "expires_in_days"
    )
    week = api.ok(api.post("/tokens", {"user": "ci", "expires_in_days": 7}), 201)
    assert week["expires_at"] is not None
