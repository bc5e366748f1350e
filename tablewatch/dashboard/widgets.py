"""What every page shares, in Streamlit: the store, cached queries, the
selection kept in the URL, the time-range picker, auto-refresh and the empty
state. Pages read widgets, call :func:`query` and render; nothing else.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from tablewatch.extras import require

st = require("streamlit", "dashboard", "the dashboard")

from tablewatch.dashboard import queries  # noqa: E402
from tablewatch.dashboard.selection import RANGES, Selection, format_time, parse_params, parse_time  # noqa: E402
from tablewatch.errors import StoreUnavailable, TablewatchError, ValidationError  # noqa: E402
from tablewatch.store import Store, open_store  # noqa: E402

#: Query results are reused for this long (seconds), and "now" is rounded to it
#: so that reruns within it hit the cache.
CACHE_TTL_S = 10
REFRESH_CHOICES = {"off": None, "10 s": 10, "30 s": 30, "1 min": 60, "5 min": 300}
STORE_URL_KEY = "tablewatch.store_url"
CUSTOM = "custom"

HOW_TO_SEND = """
Nothing has been sent to this store yet. Send data with the collector SDK:

```python
import tablewatch
with tablewatch.Collector("{url}") as collector:
    with collector.task("nightly-etl", "extract"):      # task durations, retries, failures
        ...
    with collector.run("ranker", params={{"lr": 0.01}}):  # training curves
        collector.log("train.loss", 0.42, step=1)
    collector.log_prediction("ranker", {{"age": 41}}, 0.83)  # drift sketches
```

or from a shell: `tablewatch push etl.rows 1250 --tag job=load --store {url}`,
or over HTTP: `tablewatch server --store {url}` then `POST /api/v1/points`.
Model servers: `app.add_middleware(TablewatchMiddleware, collector=collector, service="ranker")`.
"""


def configure(store_url: str | None) -> str:
    """Record the store URL for this session (given on the command line, else
    ``$TABLEWATCH_STORE``, else ``./tablewatch.db``); the URL in use."""
    url = store_url or os.environ.get("TABLEWATCH_STORE") or "tablewatch.db"
    st.session_state[STORE_URL_KEY] = url
    return url


def store_url() -> str:
    return st.session_state.get(STORE_URL_KEY) or configure(None)


@st.cache_resource(show_spinner=False)
def _open(url: str) -> Store:
    return open_store(url)


def store() -> Store:
    return _open(store_url())


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=512)
def _cached(url: str, name: str, args: tuple, kwargs: tuple) -> Any:
    return getattr(queries, name)(_open(url), *args, **dict(kwargs))


def query(name: str, *args: Any, **kwargs: Any) -> Any:
    """``queries.<name>(store, *args, **kwargs)``, cached for
    :data:`CACHE_TTL_S` seconds per store URL and arguments."""
    return _cached(store_url(), name, tuple(args), tuple(sorted(kwargs.items())))


def clear_cache() -> None:
    """Forget cached query results (after the page changed the store)."""
    _cached.clear()


def now() -> float:
    """The current time rounded up to the cache period (so that reruns share
    cached results, and a range ending "now" still holds what just arrived)."""
    return float(math.ceil(time.time() / CACHE_TTL_S) * CACHE_TTL_S)


# -- the selection, kept in the URL --------------------------------------------------------


LAST_PARAMS_KEY = "tablewatch.last_params"
GENERATION_KEY = "tablewatch.widget_generation"


def _url_params() -> dict[str, str]:
    return {name: ",".join(st.query_params.get_all(name)) for name in st.query_params.keys()}


def widget_key(name: str) -> str:
    """The key of a widget that shows part of the selection. It changes when
    the URL changed under the page (a link opened, back/forward), so that the
    widget starts again from the URL instead of keeping its old state."""
    return f"{name}@{st.session_state.get(GENERATION_KEY, 0)}"


def selection() -> Selection:
    """The selection from the URL's query parameters; a bad parameter is shown
    as an error and left out."""
    current = _url_params()
    last = st.session_state.get(LAST_PARAMS_KEY)
    if last is not None and last != current:
        st.session_state[GENERATION_KEY] = st.session_state.get(GENERATION_KEY, 0) + 1
    st.session_state[LAST_PARAMS_KEY] = current
    raw = {name: st.query_params.get_all(name) for name in st.query_params.keys()}
    try:
        return parse_params(raw)
    except ValidationError as error:
        st.error(f"Ignoring query parameter {error}")
        raw.pop(error.field, None)
        if error.field == "end":
            raw.pop("start", None)
        try:
            return parse_params(raw)
        except ValidationError:
            return Selection()


def keep_in_url(sel: Selection) -> None:
    """Write the selection to the URL (only when it changed: writing is not free)."""
    params = sel.to_params()
    if _url_params() != params:
        st.query_params.from_dict(params)
    st.session_state[LAST_PARAMS_KEY] = params


def time_range(sel: Selection) -> Selection:
    """The time-range picker (sidebar): a named range ending now, or a custom
    start and end."""
    custom = sel.start is not None or sel.end is not None
    options = [*RANGES, CUSTOM]
    choice = st.sidebar.selectbox("Time range", options, index=options.index(CUSTOM if custom else sel.range),
                                  key=widget_key("time_range"))
    if choice != CUSTOM:
        return sel.with_(range=choice, start=None, end=None)
    start, end = sel.window(now())
    start_text = st.sidebar.text_input("Start (UTC)", format_time(start), key=widget_key("time_start"))
    end_text = st.sidebar.text_input("End (UTC)", format_time(end), key=widget_key("time_end"))
    try:
        start, end = parse_time(start_text, "start"), parse_time(end_text, "end")
    except ValidationError as error:
        st.sidebar.error(str(error))
        return sel
    if not start < end:
        st.sidebar.error("End must be after start")
        return sel
    return sel.with_(start=start, end=end)


def refresh_interval() -> float | None:
    choice = st.sidebar.selectbox("Auto-refresh", list(REFRESH_CHOICES), index=0, key="auto_refresh")
    return REFRESH_CHOICES[choice]


def pick(label: str, options: Sequence[str], current: str | None, key: str,
         all_label: str | None = None) -> str | None:
    """A selectbox over ``options`` starting at ``current``; with ``all_label``
    an extra first choice meaning "all" (returned as None)."""
    choices = ([all_label] if all_label else []) + list(options)
    if not choices:
        return None
    index = choices.index(current) if current in choices else 0
    chosen = st.selectbox(label, choices, index=index, key=widget_key(key))
    return None if all_label and chosen == all_label else chosen


def chart(figure: Any, key: str) -> None:
    """A figure of :mod:`~tablewatch.dashboard.charts`, as wide as its column,
    in its own look: Streamlit's theme would add a template, and a figure with
    one is drawn twice (see the charts module)."""
    st.plotly_chart(figure, key=key, width="stretch", theme=None)


def empty_state(what: str = "") -> None:
    """Say there is nothing to show, and how to send data."""
    if what:
        st.info(what)
    st.markdown(HOW_TO_SEND.format(url=store_url()))


def run_page(title: str, body: Callable[[Selection, float, float], None]) -> None:
    """Common frame of a page: title, time range and auto-refresh in the
    sidebar, the empty state when the store has no data, then ``body(selection,
    start, end)`` in a fragment that reruns every refresh interval."""
    st.title(title)
    sel = time_range(selection())
    interval = refresh_interval()
    st.sidebar.caption(f"Store: `{store_url()}`")
    try:
        has_data = query("has_any_data")
    except TablewatchError as error:
        st.error(f"Cannot read the store {store_url()!r}: {error}")
        return
    if not has_data:
        keep_in_url(sel)
        empty_state()
        return

    @st.fragment(run_every=interval)
    def refreshed() -> None:
        start, end = sel.window(now())
        try:
            body(sel, start, end)
        except StoreUnavailable as error:  # the page stays up and tries again at the next refresh
            st.error(f"The store is unavailable: {error}")

    refreshed()
