"""Where checkpoints and results live: a local folder, or any filesystem pyarrow (or fsspec) opens by URI
(`s3://bucket/prefix`, `gs://...`), read and written through one small path type.

`at(x)` gives a `pathlib.Path` for a local path and a `RemotePath` for a URI; both answer the same
questions (`/`, `is_file`, `is_dir`, `iterdir`, `rglob`, `read_bytes`, ...), so the safe checkpoint reader,
discovery and reports work on either without downloading a checkpoint. A remote tree is listed once
(one recursive listing per root) and answered from that listing. Credentials and endpoints come from
the standard places (`AWS_*` variables, `AWS_ENDPOINT_URL`, the AWS config files); rlgraft never writes
them anywhere.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from rlgraft.errors import RlgraftError

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# The package that brings a filesystem for a scheme pyarrow does not open itself.
PACKAGES = {"az": "adlfs", "abfs": "adlfs", "abfss": "adlfs", "hf": "huggingface_hub", "ftp": "fsspec",
            "http": "fsspec", "https": "fsspec", "memory": "fsspec"}
ANSWER_TIMEOUT_S = 15.0  # the probe's own timeouts (3 s connect, 5 s without a byte, 2 tries) end it sooner


def is_uri(path: Any) -> bool:
    return isinstance(path, str | RemotePath) and bool(URI.match(str(path))) and not str(path).startswith("file://")


def filesystem(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path inside it) for a URI; one filesystem per scheme and bucket."""
    scheme, rest = uri.split("://", 1)
    bucket, _, key = rest.partition("/")
    fs, root = _bucket_fs(scheme, bucket)
    key = key.strip("/")
    return fs, (f"{root.rstrip('/')}/{key}" if key else root)


@cache
def _bucket_fs(scheme: str, bucket: str) -> tuple[Any, str]:
    """The filesystem of `scheme://bucket` and the bucket's path in it; a scheme with nothing to open it is one
    paragraph naming the package."""
    import pyarrow.fs as pafs

    uri = f"{scheme}://{bucket}"
    try:
        fs, root = pafs.FileSystem.from_uri(uri)
        if scheme == "s3":
            fs = s3_with_timeouts(fs)
        return fs, root
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        try:
            import fsspec

            fs = fsspec.filesystem(scheme)
        except (ImportError, ValueError) as fsspec_exc:
            package = PACKAGES.get(scheme, f"an fsspec filesystem for `{scheme}://`")
            raise RlgraftError(f"no filesystem for `{scheme}://` URIs is installed ({exc}; fsspec: {fsspec_exc})",
                               fix=f"pip install {package}, or use s3://, gs:// or a local path") from exc
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), bucket


def s3_with_timeouts(fs: Any, connect_s: float = 5.0, request_s: float = 30.0, attempts: int = 3) -> Any:
    """The S3 filesystem `from_uri` made (region, credentials, AWS_ENDPOINT_URL as it resolved them), with
    timeouts: the SDK's own retry a silent endpoint for minutes, and a process then waits for them to exit."""
    from urllib.parse import urlparse

    import pyarrow.fs as pafs

    kwargs: dict[str, Any] = dict(region=fs.region, connect_timeout=connect_s, request_timeout=request_s,
                                  retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=attempts))
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=parsed.netloc + parsed.path.rstrip("/"), scheme=parsed.scheme)
    return pafs.S3FileSystem(**kwargs)


def uri_of(fs: Any, path: str) -> str:
    """The URI of a path inside a pyarrow filesystem (what Tune reports has no scheme)."""
    kind = getattr(fs, "type_name", "local")
    if kind == "local":
        return path
    scheme = {"gcs": "gs", "py::fsspec+s3": "s3"}.get(kind, kind)
    return f"{scheme}://{path.lstrip('/')}"


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI (pathlib would fold `s3://` into `s3:/`)."""
    if is_uri(base):
        scheme, rest = base.split("://", 1)
        return f"{scheme}://{posixpath.join(rest.rstrip('/'), *parts)}"
    return str(Path(base, *parts))


def at(path: str | os.PathLike[str] | RemotePath) -> Any:
    """`pathlib.Path` for a local path, `RemotePath` for a URI."""
    if isinstance(path, RemotePath):
        return path
    text = os.fspath(path) if not isinstance(path, str) else path
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    return RemotePath(text) if is_uri(text) else Path(text)


def check_reachable(uri: str) -> None:
    """Fail in seconds, naming the problem: an endpoint that does not answer, a bucket that does not exist,
    credentials that are missing or wrong. The SDKs retry for minutes on their own."""
    fs, path = filesystem(uri)
    if uri.startswith("s3://"):
        fs = s3_with_timeouts(fs, connect_s=3.0, request_s=5.0, attempts=2)  # a probe: fail fast
    bucket = path.split("/", 1)[0]
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            info = fs.get_file_info(bucket)
            import pyarrow.fs as pafs

            if info.type == pafs.FileType.NotFound:
                raise FileNotFoundError(f"bucket `{bucket}` does not exist")
            outcome.append(None)
        except BaseException as exc:  # reported below, in the driver's thread
            outcome.append(exc)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(ANSWER_TIMEOUT_S)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    where = f" (endpoint {endpoint}, from AWS_ENDPOINT_URL)" if endpoint and uri.startswith("s3://") else ""
    if not outcome or "Timeout was reached" in str(outcome[0]) or "timed out" in str(outcome[0]).lower():
        raise RlgraftError(f"the storage at `{uri}` does not answer within {ANSWER_TIMEOUT_S:g} s{where}",
                           fix="check the endpoint (AWS_ENDPOINT_URL for an S3-compatible server), the network, "
                               "and the bucket name")
    exc = outcome[0]
    if exc is None:
        return
    text = str(exc)
    if isinstance(exc, FileNotFoundError) or "NoSuchBucket" in text:
        raise RlgraftError(f"the bucket `{bucket}` of `{uri}` does not exist{where}",
                           fix="create it (e.g. `aws s3 mb s3://BUCKET`), or correct storage=/+resume=") from exc
    if any(w in text for w in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "credentials",
                               "Forbidden", "403")):
        raise RlgraftError(f"the storage at `{uri}` refuses these credentials{where}: {text.splitlines()[0]}",
                           fix="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE and the AWS config "
                               "files) to credentials allowed to read and write the bucket") from exc
    raise RlgraftError(f"cannot reach the storage at `{uri}`{where}: {type(exc).__name__}: {text.splitlines()[0]}",
                       fix="check the endpoint (AWS_ENDPOINT_URL), the credentials (AWS_*), and the bucket") from exc


# --------------------------------------------------------------------------- remote paths
@dataclass(frozen=True)
class _Stat:
    st_size: int
    st_mtime: float


class _Listing:
    """One recursive listing of a remote root: path -> (is_dir, size, mtime)."""

    def __init__(self, fs: Any, root: str):
        import pyarrow.fs as pafs

        self.entries: dict[str, tuple[bool, int, float]] = {}
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
        for info in infos:
            mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
            self.entries[info.path.rstrip("/")] = (info.type == pafs.FileType.Directory, info.size or 0, mtime)
            parent = posixpath.dirname(info.path.rstrip("/"))  # object stores list no directory entries
            while parent and parent.startswith(root) and parent not in self.entries:
                self.entries[parent] = (True, 0, 0.0)
                parent = posixpath.dirname(parent)
        if self.entries:
            self.entries.setdefault(root.rstrip("/"), (True, 0, 0.0))


_listings: dict[tuple[str, str], _Listing] = {}


class RemotePath:
    """A path in a remote filesystem by its URI, with the part of pathlib's API rlgraft's readers use."""

    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        self.scheme = self.uri.split("://", 1)[0]
        self.fs, self.path = filesystem(self.uri)

    # pathlib-like -----------------------------------------------------------------------------
    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"RemotePath({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __lt__(self, other: RemotePath) -> bool:
        return self.uri < other.uri

    def __truediv__(self, part: str | os.PathLike[str]) -> RemotePath:
        return RemotePath(join(self.uri, os.fspath(part)))

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def stem(self) -> str:
        return posixpath.splitext(self.name)[0]

    @property
    def parent(self) -> RemotePath:
        parent = posixpath.dirname(self.path)
        return RemotePath(f"{self.scheme}://{parent}") if parent else self

    @property
    def parents(self) -> list[RemotePath]:
        out, p = [], self
        while p.parent != p:
            p = p.parent
            out.append(p)
        return out

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("/"))

    def expanduser(self) -> RemotePath:
        return self

    def resolve(self) -> RemotePath:
        return self

    def is_absolute(self) -> bool:
        return True

    def relative_to(self, other: RemotePath) -> Path:
        if not (self.path + "/").startswith(other.path.rstrip("/") + "/") and self.path != other.path:
            raise ValueError(f"{self} is not under {other}")
        return Path(self.path[len(other.path):].lstrip("/") or ".")

    def _entry(self) -> tuple[bool, int, float] | None:
        listing = self._listing()
        if listing is not None:
            return listing.entries.get(self.path)
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.NotFound:
            return None
        return (info.type == pafs.FileType.Directory, info.size or 0,
                info.mtime.timestamp() if info.mtime is not None else 0.0)

    def _listing(self) -> _Listing | None:
        for (scheme, root), listing in _listings.items():
            if scheme == self.scheme and (self.path == root or self.path.startswith(root.rstrip("/") + "/")):
                return listing
        return None

    def list_tree(self) -> RemotePath:
        """List everything under this path once; later questions about it are answered from the listing."""
        _listings[(self.scheme, self.path)] = _Listing(self.fs, self.path)
        return self

    def exists(self) -> bool:
        return self._entry() is not None

    def is_file(self) -> bool:
        e = self._entry()
        return e is not None and not e[0]

    def is_dir(self) -> bool:
        e = self._entry()
        return e is not None and e[0]

    def stat(self) -> _Stat:
        e = self._entry()
        if e is None:
            raise FileNotFoundError(self.uri)
        return _Stat(st_size=e[1], st_mtime=e[2])

    def _below(self) -> list[str]:
        """Every listed path under this one (listing the tree first if nothing listed it yet)."""
        listing = self._listing() or self.list_tree()._listing()
        assert listing is not None
        prefix = self.path.rstrip("/") + "/"
        return sorted(p for p in listing.entries if p.startswith(prefix))

    def iterdir(self) -> Iterator[RemotePath]:
        start = len(self.path.rstrip("/")) + 1
        for name in sorted({p[start:].split("/", 1)[0] for p in self._below()}):
            yield self / name

    def rglob(self, pattern: str) -> Iterator[RemotePath]:
        for p in self._below():
            if fnmatch.fnmatchcase(posixpath.basename(p), pattern):
                yield RemotePath(f"{self.scheme}://{p}")

    def glob(self, pattern: str) -> Iterator[RemotePath]:
        """One level (or `*/name`) below this path."""
        for child in self.iterdir():
            head, _, rest = pattern.partition("/")
            if fnmatch.fnmatchcase(child.name, head):
                if rest:
                    yield from child.glob(rest)
                else:
                    yield child

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return bytes(f.read())

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_text(self, text: str) -> None:
        self.fs.create_dir(posixpath.dirname(self.path), recursive=True)
        with self.fs.open_output_stream(self.path) as f:
            f.write(text.encode())
        _listings.clear()

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        self.fs.create_dir(self.path, recursive=True)


def forget() -> None:
    """Drop cached listings and filesystems (a command that lists, writes, then lists again; tests that change
    the endpoint)."""
    _listings.clear()
    _bucket_fs.cache_clear()
