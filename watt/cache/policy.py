"""RFC 9111 decisions for the HTTP cache, driven through hishel's sans-IO state machine.

Main side only (hishel is imported here, never in a worker).  hishel 2's
``IdleClient`` / ``CacheMiss`` / ``NeedRevalidation`` states take plain
request and response models and say what to do — serve a stored response,
revalidate it, or go to the application and maybe store the answer — with no
HTTP client and no I/O, so we drive them from channel frames.  What this
module adds on top, and hishel leaves to its users:

- Watt's safety rules: a response with ``Set-Cookie``, or to a request with
  ``Authorization``, is never stored unless ``httpCache`` opts in; a request
  with ``Cache-Control: no-store`` is not stored; ``Vary: *`` is not stored.
- ``defaultTTL``: a response without its own freshness (no ``s-maxage``,
  ``max-age`` or ``Expires``) is fresh for that many seconds (hishel sees a
  ``s-maxage`` we add to its view of the headers, never to what is served);
  with ``defaultTTL: 0`` such a response is only stored when it has a
  validator (``ETag``/``Last-Modified``), since it could only be revalidated.
- A ``Date`` header on responses that have none (RFC 9110 §6.6.1: a cache
  records when it received them), since hishel ages a response by its Date.
- A client's own ``If-None-Match`` / ``If-Modified-Since`` answered 304 from a
  fresh entry.
"""

from __future__ import annotations

import email.utils
import time
import uuid

import hishel
from hishel._core._headers import parse_cache_control
from hishel._core._spec import get_freshness_lifetime
from hishel._utils import parse_date

from . import normalize_url  # noqa: F401 - part of the policy's vocabulary

#: A shared cache (``private`` responses are not stored; ``s-maxage`` counts).
OPTIONS = {"shared": True, "supported_methods": ["GET", "HEAD"], "allow_stale": False}
#: Per-entry bytes counted on top of the body and headers (objects, index).
OVERHEAD = 256


class Entry:
    """One stored response (a variant of its key when the response has ``Vary``)."""

    __slots__ = ("_fresh", "_policy", "app", "body", "default_ttl", "headers", "id", "key",
                 "method", "request_headers", "size", "status", "tags", "url")

    def __init__(self, *, key: str, app: str, method: str, url: str, status: int,
                 headers: list[tuple[str, str]], body: bytes,
                 request_headers: dict[str, list[str]], tags: tuple[str, ...],
                 default_ttl: int = 0, entry_id: str | None = None) -> None:
        self.id = entry_id or uuid.uuid4().hex
        self.key = key
        self.app = app
        self.method = method
        self.url = url
        self.status = status
        self.headers = headers
        self.body = body
        self.request_headers = request_headers
        self.tags = tags
        self.default_ttl = default_ttl
        self.size = OVERHEAD + len(body) + sum(len(n) + len(v) for n, v in headers) + sum(
            len(n) + len(v) for n, values in request_headers.items() for v in values)
        self._policy: hishel.Entry | None = None
        self._fresh: tuple | None = None

    def freshness(self) -> tuple[int | None, int | None, bool]:
        """``(Date, freshness lifetime, no-cache)`` as hishel reads them, computed once:
        :func:`lookup`'s fast path compares them with the clock per request."""
        if self._fresh is None:
            response = self.policy().response
            self._fresh = (parse_date(response.headers.get("date", "")),
                           get_freshness_lifetime(response, True),
                           parse_cache_control(response.headers.get("cache-control")).no_cache
                           is True)
        return self._fresh

    def policy(self) -> hishel.Entry:
        """The entry as hishel sees it (``defaultTTL`` as an ``s-maxage``)."""
        if self._policy is None:
            headers = _lists(self.headers)
            if self.default_ttl:
                headers["cache-control"] = [*headers.get("cache-control", []),
                                            f"s-maxage={self.default_ttl}"]
            self._policy = hishel.Entry(
                id=uuid.UUID(self.id),
                request=hishel.Request(self.method, self.url,
                                       hishel.Headers(self.request_headers)),
                response=hishel.Response(self.status, hishel.Headers(headers)))
        return self._policy

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def to_tuple(self) -> tuple:
        """Plain data (for a shared store): see :meth:`from_tuple`."""
        return (self.id, self.key, self.app, self.method, self.url, self.status,
                tuple(self.headers), self.body,
                tuple((k, tuple(v)) for k, v in self.request_headers.items()), self.tags,
                self.default_ttl)

    @classmethod
    def from_tuple(cls, data: tuple) -> Entry:
        (entry_id, key, app, method, url, status, headers, body, request_headers, tags,
         default_ttl) = data
        return cls(key=key, app=app, method=method, url=url, status=status,
                   headers=[tuple(h) for h in headers], body=body,
                   request_headers={k: list(v) for k, v in request_headers},
                   tags=tuple(tags), default_ttl=default_ttl, entry_id=entry_id)


def cache_key(method: str, url: str) -> str:
    return f"{method} {url}"


def header_lists(flat: tuple[bytes, ...]) -> dict[str, list[str]]:
    """Flat channel headers -> ``{lower-case name: [values]}`` (text)."""
    headers: dict[str, list[str]] = {}
    for i in range(0, len(flat), 2):
        headers.setdefault(flat[i].decode("latin-1").lower(), []).append(
            flat[i + 1].decode("latin-1"))
    return headers


def vary_names(headers: list[tuple[str, str]]) -> set[str]:
    """The request header names a response ``Vary``s on."""
    return {n.strip().lower() for name, value in headers if name == "vary"
            for n in value.split(",") if n.strip()}


def varied(request_headers: dict[str, list[str]],
           headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    """The request headers an entry must keep: those its response ``Vary``s on."""
    names = vary_names(headers)
    return {name: values for name, values in request_headers.items() if name in names}


def _lists(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in pairs:
        headers.setdefault(name, []).append(value)
    return headers


def _request(method: str, url: str, headers: dict[str, list[str]]) -> hishel.Request:
    return hishel.Request(method, url, hishel.Headers(headers))


# -- lookup ----------------------------------------------------------------------------
class Hit:
    """A stored response answers the request (``age`` in seconds); ``not_modified``:
    the client's own validators match, answer 304."""

    __slots__ = ("age", "entry", "not_modified")

    def __init__(self, entry: Entry, age: int, not_modified: bool) -> None:
        self.entry = entry
        self.age = age
        self.not_modified = not_modified


class Revalidate:
    """Ask the application whether ``entry`` is still good, with these headers added."""

    __slots__ = ("conditions", "entry")

    def __init__(self, entry: Entry, conditions: list[tuple[str, str]]) -> None:
        self.entry = entry
        self.conditions = conditions


#: Request headers that make hishel's full state machine decide (the fast path
#: covers plain requests only).
_SPECIAL = frozenset({"cache-control", "pragma", "range", "if-none-match",
                      "if-modified-since"})


def lookup(method: str, url: str, request_headers: dict[str, list[str]],
           entries: list[Entry], fast: bool = True) -> Hit | Revalidate | None:
    """What to do with a request, given the stored variants of its key (None: a miss).

    A plain request (no Cache-Control, Pragma, Range or validators) that one
    variant matches takes a fast path: the same test as hishel's ``IdleClient``
    (``int(now - Date) < lifetime``, no ``no-cache``), with the Date and lifetime
    hishel computed once for the entry.  Everything else, and every stale entry,
    goes through hishel's state machine."""
    if not entries:
        return None
    if fast and not _SPECIAL.intersection(request_headers):
        for entry in entries:
            date, lifetime, no_cache = entry.freshness()
            if no_cache or lifetime is None or not all(
                    request_headers.get(n) == entry.request_headers.get(n)
                    for n in vary_names(entry.headers)):
                continue
            age = int(max(0.0, time.time() - date)) if date is not None else 0
            if age < lifetime and entry.method == method and entry.url == url:
                return Hit(entry, age, False)
    state = hishel.IdleClient(options=OPTIONS).next(_request(method, url, request_headers),
                                                    [e.policy() for e in entries])
    by_id = {e.id: e for e in entries}
    if isinstance(state, hishel.FromCache):
        entry = by_id[state.entry.id.hex]
        age = int(state.entry.response.headers.get("age") or 0)
        return Hit(entry, age, _not_modified(request_headers, entry))
    if isinstance(state, hishel.NeedRevalidation):
        if _conditional(request_headers):
            return None  # the client validates itself: its answer goes to it unchanged
        entry = by_id[state.revalidating_entries[0].id.hex]
        conditions = []
        if entry.header("etag") is not None:
            conditions.append(("if-none-match", entry.header("etag")))
        if entry.header("last-modified") is not None:
            conditions.append(("if-modified-since", entry.header("last-modified")))
        return Revalidate(entry, conditions) if conditions else None
    return None


def _conditional(headers: dict[str, list[str]]) -> bool:
    return "if-none-match" in headers or "if-modified-since" in headers


def _not_modified(headers: dict[str, list[str]], entry: Entry) -> bool:
    """RFC 9110 §13.1.1-2 on a fresh entry: weak comparison for If-None-Match."""
    if "if-none-match" in headers:
        etag = entry.header("etag")
        if etag is None:
            return False
        wanted = {t.strip().removeprefix("W/") for v in headers["if-none-match"]
                  for t in v.split(",")}
        return "*" in wanted or etag.removeprefix("W/") in wanted
    if "if-modified-since" in headers:
        since = email.utils.parsedate_to_datetime(headers["if-modified-since"][0]) \
            if _valid_date(headers["if-modified-since"][0]) else None
        modified = entry.header("last-modified")
        if since is None or modified is None or not _valid_date(modified):
            return False
        return email.utils.parsedate_to_datetime(modified) <= since
    return False


def _valid_date(value: str) -> bool:
    try:
        return email.utils.parsedate_to_datetime(value) is not None
    except (TypeError, ValueError):
        return False


# -- storing ---------------------------------------------------------------------------
def storable(method: str, url: str, request_headers: dict[str, list[str]], status: int,
             headers: list[tuple[str, str]], config) -> tuple[bool, int]:
    """Whether a response may be stored, and the ``defaultTTL`` (seconds) it gets
    (0: it has its own freshness, or only a validator)."""
    names = {name for name, _ in headers}
    if "set-cookie" in names and not config.allow_set_cookie:
        return False, 0
    if "authorization" in request_headers and not config.allow_authorization:
        return False, 0
    if parse_cache_control(", ".join(request_headers.get("cache-control", []))).no_store:
        return False, 0
    lists = _lists(headers)
    if any(v.strip() == "*" for value in lists.get("vary", ()) for v in value.split(",")):
        return False, 0
    control = parse_cache_control(", ".join(lists.get("cache-control", [])))
    default_ttl = 0
    if control.s_maxage is None and control.max_age is None and "expires" not in names:
        if config.default_ttl and not control.no_cache and not control.no_store \
                and control.private is not True:
            default_ttl = config.default_ttl
            lists["cache-control"] = [*lists.get("cache-control", []), f"s-maxage={default_ttl}"]
        elif "etag" not in names and "last-modified" not in names:
            return False, 0  # never fresh, nothing to revalidate with: useless to keep
    state = hishel.CacheMiss(request=_request(method, url, request_headers),
                             options=OPTIONS).next(
        hishel.Response(status, hishel.Headers(lists)))
    return isinstance(state, hishel.StoreAndUse), default_ttl


def with_date(headers: list[tuple[str, str]], now: float | None = None) -> list[tuple[str, str]]:
    """``headers`` with a Date (the time received) when the application sent none."""
    if any(name == "date" for name, _ in headers):
        return headers
    return [*headers, ("date", email.utils.formatdate(now or time.time(), usegmt=True))]


def refreshed(entry: Entry, not_modified: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The stored headers updated from a 304 (RFC 9111 §4.3.4), through hishel."""
    response = hishel.NeedRevalidation(
        request=_request(entry.method, entry.url, entry.request_headers),
        original_request=_request(entry.method, entry.url, entry.request_headers),
        revalidating_entries=[entry.policy()], options=OPTIONS,
    ).next(hishel.Response(304, hishel.Headers(_lists(not_modified))))
    if not isinstance(response, hishel.NeedToBeUpdated):  # validators did not match
        return []
    fresh = response.updating_entries[-1].response.headers
    pairs = [(name, value) for name in fresh for value in fresh.get_list(name) or ()]
    if entry.default_ttl:  # hishel saw our s-maxage: serve the application's own header
        source = not_modified if any(n == "cache-control" for n, _ in not_modified) \
            else entry.headers
        pairs = [(n, v) for n, v in pairs if n != "cache-control"] + [
            (n, v) for n, v in source if n == "cache-control"]
    return pairs


def tags_of(headers: list[tuple[str, str]], header: str) -> tuple[str, ...]:
    """The response's tags: the values of ``header``, comma separated."""
    return tuple(dict.fromkeys(t.strip() for name, value in headers if name == header
                               for t in value.split(",") if t.strip()))
