"""HTTP to the hub and to object storage: retries with backoff, error mapping, no token leaks.

Retries cover connection errors, timeouts, 429 and 5xx answers, and honour
``Retry-After``. The bearer token goes to the hub only: presigned storage URLs are
fetched without it, and redirects are followed by hand so it never crosses hosts.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter

from strata._version import __version__
from strata.errors import AuthError, NetworkError, StrataError, error_for_status

log = logging.getLogger("strata")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0
MAX_RETRY_SLEEP = 60.0


def _env_int(name: str, default: int) -> int:
    try:
        return max(0, int(os.environ.get(name, default)))
    except ValueError:
        return default


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    base: float = min(MAX_RETRY_SLEEP, 0.5 * 2**attempt) * (0.5 + random.random() / 2)  # noqa: S311
    if retry_after is not None:
        return min(MAX_RETRY_SLEEP, max(retry_after, 0.0))
    return base


def error_from_response(response: requests.Response) -> StrataError:
    """The exception for a hub error answer ``{"error": {"code", "message"}}``."""
    code: str | None = None
    message = f"HTTP {response.status_code} from {response.request.method} {response.url}"
    detail: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code") or "") or None
        message = str(err.get("message") or message)
        detail = err.get("detail")
        fields = detail.get("fields") if isinstance(detail, dict) else None
        if fields:
            message = f"{message} {_describe_fields(fields)}"
    elif response.status_code == 404:
        message = f"Not found: {response.url}"
    return error_for_status(response.status_code, code, message, detail)


def _describe_fields(fields: Any, prefix: str = "") -> str:
    if isinstance(fields, dict):
        return "; ".join(_describe_fields(v, f"{prefix}{k}.") for k, v in fields.items())
    if isinstance(fields, list):
        if all(isinstance(x, str) for x in fields):
            return f"{prefix.rstrip('.')}: {' '.join(fields)}"
        return "; ".join(_describe_fields(v, f"{prefix}{i}.") for i, v in enumerate(fields))
    return f"{prefix.rstrip('.')}: {fields}"


class Transport:
    """A pooled ``requests`` session bound to one hub, with retries."""

    def __init__(
        self,
        endpoint: str,
        token: str | None,
        *,
        max_retries: int | None = None,
        pool_size: int = 32,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._token = token
        self.max_retries = _env_int("STRATA_MAX_RETRIES", 5) if max_retries is None else max_retries
        self._local = threading.local()
        self._pool_size = pool_size
        self.user_agent = f"strata-client/{__version__}"

    # A session per thread: requests sessions are not documented as thread-safe.
    @property
    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self._pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = self.user_agent
            session.trust_env = True
            self._local.session = session
        return session

    @property
    def has_token(self) -> bool:
        return bool(self._token)

    def api_url(self, path: str) -> str:
        return f"{self.endpoint}/api/v1/{path.lstrip('/')}"

    def _hub_headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if extra:
            headers.update(extra)
        return headers

    def request(
        self,
        method: str,
        url: str,
        *,
        hub: bool = True,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        stream: bool = False,
        allow_redirects: bool = False,
        ok: Callable[[requests.Response], bool] | None = None,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
        rewind: Callable[[], Any] | None = None,
    ) -> requests.Response:
        """Send with retries. ``hub`` adds the bearer token (never sent elsewhere).

        Answers that ``ok`` accepts (default: < 400) are returned; 429/5xx and connection
        errors are retried; anything else raises the mapped :class:`StrataError`.
        ``rewind`` is called before a retry when ``data`` is a stream.
        """
        accept = ok or (lambda r: r.status_code < 400)
        sent_headers = self._hub_headers(headers) if hub else dict(headers or {})
        attempt = 0
        while True:
            if attempt and rewind is not None:
                rewind()
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=sent_headers,
                    json=json,
                    params=params,
                    data=data,
                    stream=stream,
                    allow_redirects=allow_redirects,
                    timeout=timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= self.max_retries:
                    where = self.endpoint if hub else "storage"
                    raise NetworkError(
                        f"Could not reach {where} ({type(exc).__name__}) after "
                        f"{attempt + 1} attempt(s): {_safe(exc)}",
                        code="network_error",
                    ) from exc
                delay = backoff_seconds(attempt)
                log.info(
                    "%s %s failed (%s); retrying in %.1fs", method, _bare(url), _safe(exc), delay
                )
                time.sleep(delay)
                attempt += 1
                continue
            if accept(response):
                return response
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                delay = backoff_seconds(
                    attempt, retry_after_seconds(response.headers.get("Retry-After"))
                )
                response.close()
                log.info(
                    "%s answered %s; retrying in %.1fs", _bare(url), response.status_code, delay
                )
                time.sleep(delay)
                attempt += 1
                continue
            if not hub:
                raise _storage_error(response)
            error = error_from_response(response)
            if isinstance(error, AuthError) and response.status_code == 401 and not self._token:
                error = AuthError(
                    f"{error.message} Run `strata login` or set STRATA_TOKEN.",
                    code=error.code,
                    status=401,
                )
            raise error

    def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", self.api_url(path), params=_clean(params)).json()

    def post_json(self, path: str, body: Any = None) -> tuple[int, Any]:
        response = self.request("POST", self.api_url(path), json=body if body is not None else {})
        if response.status_code == 204 or not response.content:
            return response.status_code, None
        return response.status_code, response.json()

    def resolve_redirect(self, response: requests.Response) -> str:
        location = response.headers.get("Location", "")
        return urljoin(response.url, location)

    def close(self) -> None:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is not None:
            session.close()
            self._local.session = None


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None and v != ""}


def _bare(url: str) -> str:
    """A URL without its query: presigned signatures stay out of logs and messages."""
    return url.split("?", 1)[0]


def _safe(exc: BaseException) -> str:
    # Exception texts from urllib3 can include full URLs; presigned query strings are
    # credentials of a sort, so cut them off.
    text = str(exc)
    return text.split("?", 1)[0] if "?" in text else text


def _storage_error(response: requests.Response) -> StrataError:
    url = response.url.split("?", 1)[0]
    snippet = response.text[:300] if response.content else ""
    code = None
    if "<Code>" in snippet:
        code = snippet.split("<Code>", 1)[1].split("</Code>", 1)[0]
    message = f"Storage answered HTTP {response.status_code} for {url}"
    if code:
        message += f" ({code})"
    err = error_for_status(response.status_code, code, message)
    if response.status_code == 403:
        # A refused presigned URL (expired, or a signature mismatch) is not a token problem.
        return NetworkError(
            message + "; the presigned URL may have expired.", code=code or None, status=403
        )
    return err
