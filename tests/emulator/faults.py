"""Fault injection: for one organization, the emulator answers a share of requests the way AWS
does on a bad day, so tests can show that estate survives it (tests/it/faults.rs,
scripts/probe-faults).

Off unless a test turns it on for an organization (every account in it, management and
members alike), with X-Amz-Target ``EstateEmulator.Faults`` and a JSON body::

    {"ManagementAccount": "<id>", "Seed": 7,
     "Throttle": 0.1, "ServerError": 0.1, "Reset": 0.05, "LostResponse": 0.05}

Rates are fractions of requests (their sum at most 1). ``"ThrottleRequests": [n, ...]``
throttles exactly those requests of the organization (counted from 0 since this call),
whatever the rates: one throttle, to measure what one costs. ``"LoseFirst": ["CreateAccount",
...]`` serves the first request of each named operation (of the organization) and loses its
answer, whatever the rates: a lost answer where it hurts most, deterministically. ``{"ManagementAccount": id}``
alone turns faults off again. ``EstateEmulator.FaultStats`` with the same ``ManagementAccount``
answers how many requests were seen and how many of each fault were injected (since the last
``EstateEmulator.Faults``). ``EstateEmulator.*`` calls themselves are never faulted.

The faults:

- ``Throttle``: the request does not reach the service; the answer is the service's
  throttling error: Organizations ``TooManyRequestsException`` (HTTP 400, "AWS Organizations
  can't complete your request because ... too many requests", API reference, Common errors
  of each action), Service Catalog ``ThrottlingException`` (400), query-protocol services
  (CloudFormation, STS, IAM) ``Throttling`` "Rate exceeded" (400, as CloudFormation answers
  it), S3 ``SlowDown`` (503, S3 API reference, Error responses).
- ``ServerError``: the request does not reach the service; HTTP 503 ``ServiceUnavailable``
  (every service may answer it, "the request has failed due to a temporary failure of the
  server", AWS API reference, Common errors).
- ``Reset``: the connection is reset (TCP RST) before the request is read: nothing happens.
- ``LostResponse``: the request is served (its effect happens: an account creation starts, a
  stack set exists), then the connection is reset instead of the answer. The client cannot
  tell this from ``Reset``: this is what idempotency tokens and read-backs are for.

Seeded: the n-th request of an organization draws its fault from ``Random(f"{seed}:{n}")``,
so a sequential run is repeated request by request; with requests in flight at once the
numbering follows arrival order, so a rerun repeats the rates, not every single fault.
"""

from __future__ import annotations

import io
import json
import random
import socket
import struct
import threading
import urllib.parse
from typing import Any, Callable, Iterable

KINDS = ("Throttle", "ServerError", "Reset", "LostResponse")

LOCK = threading.Lock()


class Faults:
    """The faults of one organization: rates, seed, and what was injected."""

    def __init__(
        self, seed: int, rates: dict[str, float], throttled: set[int], lose: set[str]
    ) -> None:
        self.seed = seed
        self.rates = rates
        self.throttled = throttled
        self.lose = lose
        self.requests = 0
        self.injected = {k: 0 for k in KINDS}

    def draw(self, operation: str) -> str | None:
        with LOCK:
            n = self.requests
            self.requests += 1
            if operation in self.lose:
                self.lose.discard(operation)
                self.injected["LostResponse"] += 1
                return "LostResponse"
        if n in self.throttled:
            with LOCK:
                self.injected["Throttle"] += 1
            return "Throttle"
        x = random.Random(f"{self.seed}:{n}").random()
        for kind in KINDS:
            x -= self.rates.get(kind, 0.0)
            if x < 0:
                with LOCK:
                    self.injected[kind] += 1
                return kind
        return None


# Management account id -> its organization's faults.
FAULTS: dict[str, Faults] = {}


def _body(environ: dict[str, Any]) -> dict[str, Any]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return json.loads(environ["wsgi.input"].read(length) or b"{}")


def _json(start_response: Callable[..., Any], value: Any) -> list[bytes]:
    body = json.dumps(value).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(body)))],
    )
    return [body]


def configure(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """EstateEmulator.Faults (see the module's docstring)."""
    body = _body(environ)
    master = str(body.pop("ManagementAccount"))
    seed = int(body.pop("Seed", 0))
    throttled = {int(n) for n in body.pop("ThrottleRequests", [])}
    lose = {str(o) for o in body.pop("LoseFirst", [])}
    rates = {k: float(body.get(k, 0.0)) for k in KINDS}
    unknown = set(body) - set(KINDS)
    if unknown or sum(rates.values()) > 1.0 or min(rates.values()) < 0.0:
        start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.1")])
        return [json.dumps({"__type": "ValidationException", "message": f"bad faults {body}"}).encode()]
    with LOCK:
        if any(rates.values()) or throttled or lose:
            FAULTS[master] = Faults(seed, rates, throttled, lose)
        else:
            FAULTS.pop(master, None)
    return _json(start_response, {})


def stats(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """EstateEmulator.FaultStats: {"Requests": n, "Throttle": n, ...} of one organization."""
    master = str(_body(environ).get("ManagementAccount"))
    with LOCK:
        f = FAULTS.get(master)
        out = {"Requests": f.requests, **f.injected} if f else {"Requests": 0}
    return _json(start_response, out)


def _caller(environ: dict[str, Any]) -> str | None:
    """The account a request is signed as (moto maps access keys, AssumeRole's included, to
    accounts)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    marker = "Credential="
    if marker not in auth:
        return None
    key = auth.split(marker, 1)[1].split("/", 1)[0]
    from moto.iam.models import get_account_id_from

    return get_account_id_from(key)


def _faults_of(environ: dict[str, Any]) -> Faults | None:
    if not FAULTS or environ.get("HTTP_X_AMZ_TARGET", "").startswith("EstateEmulator."):
        return None
    account = _caller(environ)
    if account is None:
        return None
    import stacksets_strict

    management = stacksets_strict.management_of(account) or account
    return FAULTS.get(management)


def _operation(environ: dict[str, Any]) -> str:
    """The operation a request calls: its X-Amz-Target's action, or a query protocol's
    Action (the body is read and put back for the service)."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return target.rsplit(".", 1)[-1]
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return ""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    action = urllib.parse.parse_qs(body.decode(errors="replace")).get("Action", [""])
    return action[0]


def _error(environ: dict[str, Any], start_response: Callable[..., Any], kind: str) -> list[bytes]:
    """The answer of a throttled or failed request, in the protocol of its service."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    form = environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded")
    if kind == "ServerError":
        status, code, message = "503 Service Unavailable", "ServiceUnavailable", "Service unavailable"
    elif target.startswith("AWSOrganizations"):
        status, code = "400 Bad Request", "TooManyRequestsException"
        message = "AWS Organizations can't complete your request because it received too many requests. Try again later."
    elif target:
        status, code, message = "400 Bad Request", "ThrottlingException", "Rate exceeded"
    elif form:
        status, code, message = "400 Bad Request", "Throttling", "Rate exceeded"
    else:
        status, code, message = "503 Slow Down", "SlowDown", "Please reduce your request rate."
    if target:
        start_response(status, [("Content-Type", "application/x-amz-json-1.1")])
        return [json.dumps({"__type": code, "message": message}).encode()]
    if form:
        xml = (
            f"<ErrorResponse><Error><Type>{'Receiver' if kind == 'ServerError' else 'Sender'}</Type>"
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            "<RequestId>estate-emulator-fault</RequestId></ErrorResponse>"
        )
    else:
        xml = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    start_response(status, [("Content-Type", "text/xml")])
    return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else xml.encode()]


def _reset(environ: dict[str, Any]) -> None:
    """Ends the connection without an answer, and the request: the socket is shut down (the
    handler's buffered reader shares its descriptor, so closing our reference would leave the
    connection open and the unread body taken for the next request), with SO_LINGER 0 so the
    final close is a reset; werkzeug treats a ConnectionError from the application as a client
    gone, quietly, and then reads end of file, ending the connection."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    raise ConnectionResetError("estate emulator: connection reset by fault injection")


def wrap(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """The WSGI application `app`, with the faults of each request's organization."""

    def faulty(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        faults = _faults_of(environ)
        kind = faults.draw(_operation(environ)) if faults is not None else None
        if kind is None:
            return app(environ, start_response)
        if kind in ("Throttle", "ServerError"):
            return _error(environ, start_response, kind)
        if kind == "LostResponse":
            body = app(environ, lambda *args, **kwargs: None)
            for _ in body:  # served in full: the effect happens
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        _reset(environ)
        return []

    return faulty
