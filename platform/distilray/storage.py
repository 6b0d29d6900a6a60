"""Local and ``s3://`` storage through one interface (pyarrow filesystems).

Credentials come only from the standard AWS chain (environment, shared config,
instance profile); they are never logged. A custom S3 endpoint (MinIO, a local test
server) is taken from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, the variables
boto3 itself reads.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from distilray.errors import ConfigError, DataError


def is_s3(uri: str | os.PathLike) -> bool:
    return str(uri).startswith("s3://")


def s3_endpoint() -> str | None:
    """The S3 endpoint override from the environment, if any."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def s3_filesystem() -> pafs.S3FileSystem:
    """An S3 filesystem with the endpoint/region taken from the environment."""
    endpoint = s3_endpoint()
    kwargs: dict = {}
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or endpoint
        kwargs["scheme"] = parsed.scheme or "https"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


def filesystem_for(uri: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """Return ``(filesystem, path)`` for a local path or an ``s3://bucket/key`` URI."""
    uri = str(uri)
    if is_s3(uri):
        return s3_filesystem(), uri[len("s3://") :].rstrip("/")
    if "://" in uri and not uri.startswith("file://"):
        raise DataError(f"unsupported storage URI {uri!r}: use a local path or s3://bucket/prefix")
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    return pafs.LocalFileSystem(), str(Path(path).expanduser().resolve())


def read_bytes(uri: str | os.PathLike) -> bytes:
    """Read a whole file from local disk or S3."""
    fs, path = filesystem_for(uri)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"cannot read {uri}: {exc}") from None


def read_text(uri: str | os.PathLike, what: str = "") -> str:
    """Read a whole UTF-8 text file from local disk or S3; ``what`` names the file in
    the error for bytes that are not UTF-8 (``"reference "`` -> "reference X is not ...")."""
    try:
        return read_bytes(uri).decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{what}{uri} is not UTF-8 text") from None


def write_bytes(uri: str | os.PathLike, data: bytes) -> None:
    """Write a whole file to local disk or S3 (parent folders are created)."""
    fs, path = filesystem_for(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)


def exists(uri: str | os.PathLike) -> bool:
    fs, path = filesystem_for(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_files(uri: str | os.PathLike) -> list[str]:
    """All files below a folder/prefix, as URIs of the same kind, sorted."""
    fs, path = filesystem_for(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    prefix = "s3://" if is_s3(uri) else ""
    return sorted(prefix + i.path for i in infos if i.type == pafs.FileType.File)


def copy_tree(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a folder between any two locations (local↔S3, S3↔S3, local↔local)."""
    src_fs, src_path = filesystem_for(src)
    dst_fs, dst_path = filesystem_for(dst)
    if src_fs.get_file_info(src_path).type == pafs.FileType.NotFound:
        raise DataError(f"nothing to copy: {src} does not exist")
    dst_fs.create_dir(dst_path, recursive=True)
    pafs.copy_files(src_path, dst_path, source_filesystem=src_fs, destination_filesystem=dst_fs)


def check_new_folder(path: str | os.PathLike, force: bool = False) -> Path:
    """``path`` as a local folder an output may go to: new or empty, or any with ``force``."""
    out = Path(path).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ConfigError(f"{out} exists and is not empty: choose a new folder or pass --force")
    return out


def build_folder(out: Path, build: Callable[[Path], None]) -> Path:
    """``build(tmp)`` into a temporary sibling of ``out``, then put it in ``out``'s place, so
    an interrupted build never leaves a half-written folder behind; returns ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        build(tmp / "model")
        if out.exists():
            shutil.rmtree(out)
        (tmp / "model").rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
