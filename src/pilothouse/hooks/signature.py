"""Deploy webhook requests, decided as pure functions: the signature, the event, the rule.

Two formats are accepted:

- GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`, the event in
  `X-GitHub-Event` (`push`, `workflow_run`; `ping` answers without deploying), its delivery id in
  `X-GitHub-Delivery`. GitHub signs neither a timestamp nor the delivery id, so anyone who saw
  one signed delivery could send it again under a new id: what is remembered is the body's
  SHA-256 (`replay_key`), and a body seen before is a replay whatever its delivery id.
- generic: `X-Pilothouse-Signature: sha256=<hex HMAC-SHA256(secret,
  "<timestamp>.<delivery>.<raw body>")>`, `X-Pilothouse-Timestamp: <unix seconds>` (refused
  when more than TOLERANCE seconds away from now), `X-Pilothouse-Delivery: <id>` (signed, and
  remembered: a delivery id seen before is a replay), and a JSON body
  `{"ref": "refs/heads/main" | "refs/tags/v1.2.0", "commit": "<40 hex>", "version": optional,
  "message": optional, "run_id": optional}`.

Comparisons are constant-time. A request answers one of: a push to deploy (`Push`), or a reason
to do nothing (`Ignored`), or a `Refused` with its HTTP status.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

TOLERANCE = 300  # seconds between a generic request's timestamp and the server's clock
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
TAG_VERSION_RE = re.compile(r"^v\d+\.\d+\.\d+$")
DELIVERY_RE = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


@dataclass(frozen=True)
class Push:
    """A commit to deploy: a branch or a tag, with what the artifact records."""

    kind: str  # "branch" or "tag"
    name: str
    commit: str
    version: str | None = None
    message: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class Ignored:
    reason: str


@dataclass(frozen=True)
class Refused:
    status: int
    reason: str


def sign(
    secret: str, body: bytes, timestamp: str | None = None, delivery: str | None = None
) -> str:
    """The `sha256=<hex>` signature of a body; generic format (a timestamp given): of
    `<timestamp>.<delivery>.<body>`."""
    message = body if timestamp is None else f"{timestamp}.{delivery or ''}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _same(sent: str, expected: str) -> bool:
    """Constant-time equality, as bytes: a header with any characters is unequal, not an error."""
    return hmac.compare_digest(
        sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def check_signature(
    secret: str, headers: dict[str, str], body: bytes, now: float
) -> tuple[str, str] | Refused:
    """(format, delivery id) of a correctly signed, fresh request; Refused otherwise."""
    github = headers.get("x-hub-signature-256")
    if github is not None:
        if not _same(github, sign(secret, body)):
            return Refused(401, "bad signature")
        delivery = headers.get("x-github-delivery", "")
        return (
            ("github", delivery)
            if DELIVERY_RE.match(delivery)
            else Refused(400, "missing or malformed X-GitHub-Delivery")
        )
    generic = headers.get("x-pilothouse-signature")
    if generic is None:
        return Refused(401, "unsigned request: send X-Hub-Signature-256 or X-Pilothouse-Signature")
    stamp = headers.get("x-pilothouse-timestamp", "")
    if not (stamp.isascii() and stamp.isdecimal()):
        return Refused(401, "missing or malformed X-Pilothouse-Timestamp")
    delivery = headers.get("x-pilothouse-delivery", "")
    if not DELIVERY_RE.match(delivery):
        return Refused(400, "missing or malformed X-Pilothouse-Delivery")
    if not _same(generic, sign(secret, body, stamp, delivery)):
        return Refused(401, "bad signature")
    if abs(now - int(stamp)) > TOLERANCE:
        return Refused(401, f"timestamp more than {TOLERANCE} s from the server's clock")
    return "generic", delivery


def replay_key(fmt: str, delivery: str, body: bytes) -> str:
    """What a hook remembers of an accepted request, to refuse it a second time: the generic
    format signs its delivery id, so the id; GitHub signs only the body, so the body's SHA-256
    (`sha256=<hex>`: `=` is never in a delivery id, so the two cannot collide)."""
    if fmt == "github":
        return "sha256=" + hashlib.sha256(body).hexdigest()
    return delivery


def _ref(ref: str) -> tuple[str, str] | None:
    for prefix, kind in (("refs/heads/", "branch"), ("refs/tags/", "tag")):
        if ref.startswith(prefix) and len(ref) > len(prefix):
            return kind, ref[len(prefix) :]
    return None


def parse_event(fmt: str, event: str | None, body: bytes) -> Push | Ignored | Refused:
    """What a signed request asks for."""
    try:
        payload: Any = json.loads(body)
    except ValueError:
        return Refused(400, "the body is not JSON")
    if not isinstance(payload, dict):
        return Refused(400, "the body is not a JSON object")
    if fmt == "github":
        return _github(event or "", payload)
    ref = _ref(str(payload.get("ref", "")))
    commit = str(payload.get("commit", ""))
    if ref is None or not SHA_RE.match(commit):
        return Refused(422, "need ref (refs/heads/... or refs/tags/...) and commit (40 hex)")
    version = payload.get("version")
    message = payload.get("message")
    run_id = payload.get("run_id")
    return Push(
        ref[0],
        ref[1],
        commit,
        version=str(version)[:100] if version else None,
        message=str(message)[:500] if message else None,
        run_id=str(run_id)[:100] if run_id else None,
    )


def _github(event: str, payload: dict[str, Any]) -> Push | Ignored | Refused:
    if event == "ping":
        return Ignored("ping")
    if event == "push":
        ref = _ref(str(payload.get("ref", "")))
        commit = str(payload.get("after", ""))
        if payload.get("deleted") or ref is None:
            return Ignored("a deleted ref or no ref")
        if not SHA_RE.match(commit):
            return Refused(422, "push without a commit")
        head = payload.get("head_commit")
        message = head.get("message") if isinstance(head, dict) else None
        return Push(ref[0], ref[1], commit, message=str(message)[:500] if message else None)
    if event == "workflow_run":
        run = payload.get("workflow_run")
        if not isinstance(run, dict):
            return Refused(422, "workflow_run without workflow_run")
        if payload.get("action") != "completed" or run.get("conclusion") != "success":
            return Ignored("workflow run not completed successfully")
        commit = str(run.get("head_sha", ""))
        branch = str(run.get("head_branch") or "")
        if not branch or not SHA_RE.match(commit):
            return Refused(422, "workflow_run without head_branch and head_sha")
        run_id = run.get("id")
        return Push("branch", branch, commit, run_id=str(run_id) if run_id else None)
    return Ignored(f"event {event!r} is not deployed")


@dataclass(frozen=True)
class Rule:
    """`branch` or `tag` (a glob, e.g. `main`, `release/*`, `v*`) -> environment and service."""

    environment: str
    service: str
    branch: str | None = None
    tag: str | None = None


def match(rules: list[Rule], push: Push) -> Rule | None:
    """The first rule whose pattern matches the push's branch or tag."""
    for rule in rules:
        pattern = rule.branch if push.kind == "branch" else rule.tag
        if pattern is not None and fnmatch.fnmatchcase(push.name, pattern):
            return rule
    return None


def version_of(push: Push) -> tuple[str, str | None]:
    """(artifact version, git tag): a vX.Y.Z tag is both; otherwise the version given, or
    `<branch or tag>-<12 hex of the commit>` (made safe for a version label)."""
    if push.kind == "tag" and TAG_VERSION_RE.match(push.name):
        return push.version or push.name, push.name
    if push.version:
        return push.version, None
    label = re.sub(r"[^A-Za-z0-9._+-]", "-", push.name).strip("-.") or "ref"
    return f"{label[:80]}-{push.commit[:12]}", None
