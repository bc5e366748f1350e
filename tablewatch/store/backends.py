"""Store URLs select the backend, fsspec-style.

The scheme of a store URL maps to a backend class, imported only when used so
that ``sqlite://`` never needs the Bigtable or HBase drivers installed.
"""

from __future__ import annotations

import importlib
import os
from typing import NamedTuple

from tablewatch.errors import MissingDependency, StoreURLError
from tablewatch.store.table import Backend

DEFAULT_STORE = "./tablewatch.db"
STORE_ENV = "TABLEWATCH_STORE"


class BackendSpec(NamedTuple):
    class_path: str
    install_hint: str


BACKENDS: dict[str, BackendSpec] = {
    "sqlite": BackendSpec("tablewatch.store.sqlite.SQLiteBackend", "built in"),
    "hbase": BackendSpec("tablewatch.store.hbase.HBaseBackend", "pip install 'tablewatch[hbase]'"),
    "bigtable": BackendSpec("tablewatch.store.bigtable.BigtableBackend", "pip install 'tablewatch[bigtable]'"),
}


def resolve_url(url: str | None) -> str:
    """The URL to use: ``url``, else ``$TABLEWATCH_STORE``, else ./tablewatch.db."""
    if url is None or url == "":
        url = os.environ.get(STORE_ENV) or DEFAULT_STORE
    if not isinstance(url, str):
        raise StoreURLError(f"store URL must be a string, got {type(url).__name__}")
    return url


def scheme_of(url: str) -> str:
    if "://" not in url:
        if ":" in url.split("/")[0] and not os.path.splitdrive(url)[0]:
            raise StoreURLError(
                f"store URL {url!r} is malformed: expected SCHEME://..., or a file path; "
                f"known schemes: {', '.join(sorted(BACKENDS))}"
            )
        return "sqlite"
    scheme = url.split("://", 1)[0].lower()
    if not scheme:
        raise StoreURLError(f"store URL {url!r} is malformed: the scheme before '://' is empty")
    return scheme


def open_backend(url: str | None = None, *, create: bool = True) -> Backend:
    """Open the backend a store URL names. ``create=False``: the embedded
    backend refuses a file that does not exist instead of creating it (the
    other backends create nothing when opened)."""
    url = resolve_url(url)
    scheme = scheme_of(url)
    spec = BACKENDS.get(scheme)
    if spec is None:
        raise StoreURLError(
            f"store URL {url!r}: unknown scheme {scheme!r}; known schemes: {', '.join(sorted(BACKENDS))}"
        )
    module_name, class_name = spec.class_path.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise MissingDependency(
            f"the {scheme}:// backend needs a package that is not installed ({e.name}): {spec.install_hint}"
        ) from e
    backend_class = getattr(module, class_name)
    if scheme == "sqlite":  # the only backend that creates something (a file) when opened
        return backend_class(url, create=create)
    return backend_class(url)
