"""The rollback API's data option (issue 13.2) on a history driven by hand (no worker): the
preview, the 409 of `with_data` when the release being left ran no migration, the 422 of a
value that is not a boolean."""

from __future__ import annotations

from tests.conftest import Api
from tests.deployments.test_rollback_api import _history


def test_with_data_is_refused_when_the_release_being_left_ran_no_migration(api: Api) -> None:
    _history(api)  # v2.0.0 is live; neither its deployment nor any other ran a migration
    preview = api.ok(api.get("/services/web/rollback"))
    assert (preview["from_version"], preview["to_version"]) == ("v2.0.0", "v1.0.0")
    assert preview["data_restore"] == {
        "available": False,
        "from_version": "v2.0.0",
        "backups": [],
        "reason": "v2.0.0 ran no migration: its data needs no restore",
    }
    before = api.ok(api.get("/deployments", params={"service": "web"}))["items"]

    refused = api.post("/services/web/rollback", {"with_data": True})
    assert refused.status_code == 409, refused.text
    assert refused.json()["message"] == (
        "a rollback of web from v2.0.0 to v1.0.0 cannot restore data: "
        "v2.0.0 ran no migration: its data needs no restore"
    )
    assert api.ok(api.get("/deployments", params={"service": "web"}))["items"] == before

    bad = api.post("/services/web/rollback", {"with_data": "yes"})
    assert bad.status_code == 422 and "with_data" in bad.text

    back = api.ok(api.post("/services/web/rollback", {}), 201)
    assert back["version"] == "v1.0.0" and back["restore_backup_ids"] is None
    assert back["data_restored_at"] is None and back["data_restore"]["available"] is False
