"""Where backup objects live: a local directory (default) or S3-compatible object storage.

An object is never visible under its final key until it is complete:
- local: written to `<key>.partial`, fsynced, then renamed;
- S3: a multipart upload, which S3 only shows once CompleteMultipartUpload succeeds.
A writer that dies leaves a `.partial` file or an unfinished upload; `staged()` lists them so the
cleanup job can remove orphans.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

PART_SIZE = 8 * 1024 * 1024  # S3 parts (5 MiB minimum); also bounds the writer's memory
READ_SIZE = 1024 * 1024
PARTIAL = ".partial"


class StorageError(Exception):
    """A storage operation failed; the message names the object, never a credential."""


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


@dataclass(frozen=True)
class Staged:
    key: str
    started_at: datetime
    ref: str  # a partial file's path or an upload id


class Storage(Protocol):
    kind: str

    def open_writer(self, key: str) -> Writer: ...
    def read(self, key: str) -> Iterator[bytes]: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int: ...
    def staged(self) -> list[Staged]: ...
    def discard(self, staged: Staged) -> None: ...
    def location(self, key: str) -> str: ...
    def url(self, key: str) -> str: ...


# -- local directory ------------------------------------------------------------------------


class _LocalWriter:
    def __init__(self, final: Path) -> None:
        self.final = final
        self.partial = final.with_name(final.name + PARTIAL)
        final.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.partial, "wb")  # noqa: SIM115 (closed by commit/abort)

    def write(self, data: bytes) -> None:
        self.handle.write(data)

    def commit(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.partial, self.final)
        dir_fd = os.open(self.final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def abort(self) -> None:
        if not self.handle.closed:
            self.handle.close()
        self.partial.unlink(missing_ok=True)


class LocalStorage:
    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StorageError(f"object key {key!r} leaves the backup directory")
        return path

    def open_writer(self, key: str) -> Writer:
        return _LocalWriter(self._path(key))

    def read(self, key: str) -> Iterator[bytes]:
        try:
            handle = open(self._path(key), "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise StorageError(f"backup object {self.url(key)} is missing") from None
        with handle:
            while chunk := handle.read(READ_SIZE):
                yield chunk

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def staged(self) -> list[Staged]:
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.rglob(f"*{PARTIAL}"):
            key = str(path.relative_to(self.root))[: -len(PARTIAL)]
            mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            found.append(Staged(key, mtime, str(path)))
        return found

    def discard(self, staged: Staged) -> None:
        Path(staged.ref).unlink(missing_ok=True)

    def location(self, key: str) -> str:
        return str(self._path(key).parent)

    def url(self, key: str) -> str:
        return self._path(key).as_uri()


# -- S3-compatible ----------------------------------------------------------------------------


class _S3Writer:
    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        self.parts: list[dict[str, Any]] = []
        self.buffer = bytearray()

    def _flush(self) -> None:
        number = len(self.parts) + 1
        reply = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=bytes(self.buffer),
        )
        self.parts.append({"PartNumber": number, "ETag": reply["ETag"]})
        self.buffer.clear()

    def write(self, data: bytes) -> None:
        self.buffer.extend(data)
        if len(self.buffer) >= PART_SIZE:
            self._flush()

    def commit(self) -> None:
        if self.buffer or not self.parts:
            self._flush()
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )

    def abort(self) -> None:
        self.client.abort_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
        )


class S3Storage:
    kind = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        # Credentials come from the standard AWS chain (AWS_ACCESS_KEY_ID, profiles, roles);
        # pilothouse never stores them.
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region or "us-east-1",
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )

    def _key(self, key: str) -> str:
        return self.prefix + key

    def open_writer(self, key: str) -> Writer:
        try:
            return _S3Writer(self.client, self.bucket, self._key(key))
        except Exception as exc:
            raise StorageError(f"cannot start upload to {self.url(key)}: {_reason(exc)}") from None

    def read(self, key: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except Exception as exc:
            raise StorageError(f"cannot read {self.url(key)}: {_reason(exc)}") from None
        try:
            yield from body.iter_chunks(READ_SIZE)
        finally:
            body.close()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception:
            return False
        return True

    def size(self, key: str) -> int:
        reply = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        return int(reply["ContentLength"])

    def staged(self) -> list[Staged]:
        found = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for upload in page.get("Uploads", []):
                key = upload["Key"][len(self.prefix) :]
                found.append(Staged(key, upload["Initiated"], upload["UploadId"]))
        return found

    def discard(self, staged: Staged) -> None:
        self.client.abort_multipart_upload(
            Bucket=self.bucket, Key=self._key(staged.key), UploadId=staged.ref
        )

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key).rsplit('/', 1)[0]}"

    def url(self, key: str) -> str:
        base = (self.endpoint_url or "https://s3.amazonaws.com").rstrip("/")
        return f"{base}/{self.bucket}/{self._key(key)}"


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def open_storage(config: dict[str, Any], data_dir: Path) -> Storage:
    """The storage a target's config names (`{"kind": "local", "path": ...}`, default
    `<data_dir>/backups`, or `{"kind": "s3", "bucket": ..., "prefix": ..., "endpoint_url": ...,
    "region": ...}`)."""
    kind = config.get("kind", "local")
    if kind == "s3":
        return S3Storage(
            config["bucket"],
            prefix=config.get("prefix") or "",
            endpoint_url=config.get("endpoint_url"),
            region=config.get("region"),
        )
    return LocalStorage(Path(config.get("path") or data_dir / "backups"))
