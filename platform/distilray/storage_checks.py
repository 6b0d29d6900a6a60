"""Reachability and permission checks of storage locations, run on the driver first.

A stage checks every location it reads or writes before it starts Ray or computes
anything, so a missing bucket, wrong credentials or an unreachable endpoint end as
one :class:`~distilray.errors.StorageError` line instead of a worker traceback
minutes later. ``s3://`` reads are checked with a metadata request (local inputs by
the readers, which name what is missing); S3 writes by writing and
deleting a small hidden probe object below the location.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

import pyarrow.fs as pafs

from distilray.errors import StorageError
from distilray.storage import filesystem_for, is_s3, s3_endpoint

PROBE_PREFIX = ".distilray-write-check-"  # hidden: no Parquet reader or shard listing sees it

# pyarrow's "AWS Error <CODE> during <Operation>" codes, as advice a user can act on.
_S3_ADVICE = {
    "NO_SUCH_BUCKET": "the bucket does not exist",
    "ACCESS_DENIED": "access denied: check the AWS credentials and the bucket's permissions",
    "INVALID_ACCESS_KEY_ID": "the AWS access key id is not valid: check the AWS credentials",
    "SIGNATURE_DOES_NOT_MATCH": "the AWS secret key is wrong: check the AWS credentials",
    "MISSING_AUTHENTICATION_TOKEN": "no AWS credentials found: set AWS_ACCESS_KEY_ID or AWS_PROFILE",
    "NETWORK_CONNECTION": "cannot connect to the S3 endpoint",
}
_AWS_CODE = re.compile(r"AWS Error ([A-Z_]+)")


def describe_storage_error(uri: str, exc: BaseException) -> str:
    """A one-line reason for a failed storage call on ``uri``.

    >>> describe_storage_error("s3://b/k", OSError("... AWS Error NO_SUCH_BUCKET during X: ..."))
    "the bucket 'b' does not exist"
    """
    text = " ".join(str(exc).split())
    if not is_s3(uri):
        return getattr(exc, "strerror", None) or text or type(exc).__name__
    match = _AWS_CODE.search(text)
    code = match.group(1) if match else ("NO_SUCH_BUCKET" if "not found" in text else "")
    if code == "NO_SUCH_BUCKET":
        return f"the bucket {bucket_of(uri)!r} does not exist"
    if code == "NETWORK_CONNECTION":
        return f"cannot connect to the S3 endpoint {s3_endpoint() or '(AWS default)'}"
    return _S3_ADVICE.get(code) or text or type(exc).__name__


def bucket_of(uri: str) -> str:
    return uri.removeprefix("s3://").split("/", 1)[0]


def check_readable(uri: str, what: str) -> None:
    """Raise :class:`StorageError` unless the file or folder ``uri`` exists and can be seen."""
    fs, path = filesystem_for(uri)
    try:
        found = _exists(fs, path)
        if not found and is_s3(uri) and not _exists(fs, bucket_of(uri)):
            raise StorageError(f"{what} {uri}: the bucket {bucket_of(uri)!r} does not exist")
    except OSError as exc:
        reason = describe_storage_error(uri, exc)
        raise StorageError(f"{what} {uri} is not readable: {reason}") from None
    if not found:
        raise StorageError(f"{what} {uri} does not exist")


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def check_writable(uri: str, what: str) -> None:
    """Raise :class:`StorageError` unless files can be written below ``uri``.

    S3: a small hidden probe object is written and deleted. Local: the folder, or
    the nearest ancestor that exists (nothing is created), must be a writable folder.
    """
    if not is_s3(uri):
        _check_local_writable(uri, what)
        return
    fs, path = filesystem_for(uri)
    probe = f"{path.rstrip('/')}/{PROBE_PREFIX}{secrets.token_hex(4)}"
    try:
        with fs.open_output_stream(probe) as stream:
            stream.write(b"ok")
        fs.delete_file(probe)
    except OSError as exc:
        reason = describe_storage_error(uri, exc)
        raise StorageError(f"{what} {uri} is not writable: {reason}") from None


def _check_local_writable(uri: str, what: str) -> None:
    path = Path(filesystem_for(uri)[1])
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise StorageError(f"{what} {uri} is not writable: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StorageError(f"{what} {uri} is not writable: no write permission on {existing}")


Location = tuple[str, "str | os.PathLike"]  # (what it is, e.g. "run.storage"; where)


def check_access(read: Iterable[Location] = (), write: Iterable[Location] = ()) -> None:
    """Check every ``s3://`` ``(what, location)`` to be read, then every one to be written."""
    for what, uri in read:
        # Local inputs are checked by the readers themselves, with messages of their own.
        if is_s3(uri):
            check_readable(str(uri), what)
    for what, uri in write:
        check_writable(str(uri), what)
