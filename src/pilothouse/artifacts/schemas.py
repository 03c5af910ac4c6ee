"""Request and response bodies for artifacts (seed 001 Deployment Artifact)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from pilothouse.core.inputs import INT32_MAX, NotBool
from pilothouse.core.rules import (
    DIGEST_RE,
    IMAGE_PATTERN,
    SHA_RE,
    TAG_RE,
    VERSION_RE,
    as_validator,
    check_commit_sha,
    check_git_tag,
    check_image,
    check_image_digest,
    check_version,
    schema_hint,
)

Sha = Annotated[
    str, AfterValidator(as_validator(check_commit_sha)), schema_hint(pattern=SHA_RE.pattern)
]
Tag = Annotated[
    str, AfterValidator(as_validator(check_git_tag)), schema_hint(pattern=TAG_RE.pattern)
]
Digest = Annotated[
    str, AfterValidator(as_validator(check_image_digest)), schema_hint(pattern=DIGEST_RE.pattern)
]
Image = Annotated[
    str, AfterValidator(as_validator(check_image)), schema_hint(pattern=IMAGE_PATTERN)
]
Version = Annotated[
    str, AfterValidator(as_validator(check_version)), schema_hint(pattern=VERSION_RE.pattern)
]


class ArtifactCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: str = Field(description="Service name or id the artifact is a build of.")
    environment: str | None = Field(
        default=None, description="Environment, when the service name is ambiguous."
    )
    version: Version = Field(description="Version label, unique per service (e.g. v1.2.0).")
    commit_sha: Sha = Field(description="Git commit SHA-1, exactly 40 hex characters.")
    git_tag: Tag | None = Field(default=None, description="Semantic version tag vX.Y.Z.")
    image_uri: Image | None = Field(default=None, description="Full image reference.")
    image_digest: Digest | None = Field(default=None, description="sha256:<64 hex>.")
    size_mb: Annotated[int, Field(ge=0, le=INT32_MAX), NotBool] | None = Field(
        default=None, description="Artifact size in MB."
    )
    changelog: str | None = Field(default=None, max_length=20000, description="What changed.")


class ArtifactUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    changelog: str | None = Field(
        default=None, max_length=20000, description="Artifacts are immutable but the changelog."
    )


class ArtifactRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Artifact id.")
    service_id: uuid.UUID = Field(description="Service.")
    version: str = Field(description="Version label.")
    commit_sha: str = Field(description="Commit SHA.")
    git_tag: str | None = Field(description="Git tag.")
    image_uri: str | None = Field(description="Image reference.")
    image_digest: str | None = Field(description="Image digest.")
    size_mb: int | None = Field(description="Size, MB.")
    changelog: str | None = Field(description="Changelog.")
    deployed: bool = Field(description="Whether this is the service's live artifact.")
    deployed_at: datetime | None = Field(description="When it went live.")
    created_at: datetime = Field(description="Registered (UTC).")
    pruned_at: datetime | None = Field(
        default=None,
        description="Pruned (unused for 30 days, not a rollback target): cannot be deployed.",
    )
