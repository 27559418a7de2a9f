"""The ASGI application: the safety checks, the routes, server-sent events, and uvicorn.

Every request first passes `Guard`, in this order:
    Host     the Host header must name this server: localhost, an IP address, the --host name or
             an --allow-host name (a DNS-rebinding page's requests carry its own name);
    Origin   when a browser sends one, it must be this server's own (another page cannot drive it);
    token    with a token, every request to /api must carry `Authorization: Bearer TOKEN`, compared
             in constant time (401 otherwise); the page at / holds nothing but its own code;
    method   GET for / and /api/models and /api/health, POST with Content-Type application/json
             for the rest (no form or text/plain post from another site can reach them).
No response carries a CORS header. Bodies are read up to --max-body (413 beyond, whatever
Content-Length says), then parsed by the project's one strict JSON reader (400 for anything
else). The work goes to the pool (pool.py); a full queue is 503 with Retry-After. While a request
waits for its answer, its connection is watched: a client that goes away has its job cancelled.

A generation with "stream": true is answered with server-sent events as it is made: `piece`
events (a JSON string each, the text in order, the prime first), then one `done` event (the
whole answer, as without streaming) or `error` ({"error": ...}). A problem found before the
first piece (a character the model does not know) is an ordinary JSON error instead.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import re
import socket
import threading
from importlib import resources
from typing import Any, Awaitable, Callable

from ..errors import CharRNNError
from .pool import Busy, Cancelled, Pool
from .service import RequestError, Service, encode

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

POST_ENDPOINTS = ("generate", "score", "inspect", "units", "match", "compare", "text", "gradflow", "saturation",
                  "ngram")
GET_ENDPOINTS = ("models", "health")
# seconds a client refused for a full queue is told to wait before it tries again
RETRY_AFTER = 1
# on every response
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"), (b"cache-control", b"no-store")]


def page() -> tuple[bytes, str]:
    """The explorer page and its Content-Security-Policy: nothing from anywhere else, its own
    inline script and style allowed by their hashes, requests only to this server."""
    text = resources.files(__package__).joinpath("explorer.html").read_text(encoding="utf-8")

    def hashes(tag: str) -> str:
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in bodies)

    csp = (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; connect-src 'self'; "
           "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return text.encode("utf-8"), csp


def json_response(status: int, body: bytes, headers: dict[str, str] | None = None) -> Any:
    from starlette.responses import Response

    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    return json_response(status, encode({"error": message}), headers)


def busy(pool: Pool) -> Any:
    return error(503, f"every worker is busy and the queue of {pool.queue_size} is full: try again in "
                 f"{RETRY_AFTER} s", {"retry-after": str(RETRY_AFTER)})


def host_of(value: str) -> str:
    """The host of a Host header or an origin's netloc, without its port, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    """A host that only this machine can reach: a loopback address or `localhost`."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware: the checks every request passes before any route (module docstring), and
    the headers every response carries."""

    def __init__(self, app: Any, token: str | None, allowed_hosts: frozenset[str]) -> None:
        self.app, self.token, self.allowed_hosts = app, token, allowed_hosts

    def refusal(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        """(status, message, headers) when the request must be refused before anything else."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host_header = headers.get("host", "")
        host = host_of(host_header)
        if not host or not (is_ip(host) or host in self.allowed_hosts):
            return 421, f"the Host header {host_header[:80]!r} does not name this server (--allow-host adds a name)", {}
        origin = headers.get("origin")
        if origin is not None:
            netloc = origin.split("://", 1)[-1].rstrip("/").lower()
            if netloc != host_header.strip().lower():
                return 403, "a request from another origin is refused", {}
        if self.token is not None and scope.get("path", "").startswith("/api"):
            given = headers.get("authorization", "").encode("latin-1")
            if not hmac.compare_digest(given, f"Bearer {self.token}".encode("latin-1")):
                return 401, "this server needs its token: Authorization: Bearer TOKEN", {"www-authenticate": "Bearer"}
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", []), *SECURITY_HEADERS])
            await send(message)

        refused = self.refusal(scope)
        if refused is not None:
            status, message, headers = refused
            return await error(status, message, headers)(scope, receive, send_with_headers)
        await self.app(scope, receive, send_with_headers)


def create_app(service: Service, pool: Pool, token: str | None = None, host: str = "127.0.0.1",
               allowed_hosts: tuple[str, ...] = ()) -> Any:
    """The Starlette application serving `service` with `pool`'s workers (module docstring)."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import Response
    from starlette.routing import Route

    names = {"localhost", *(h.lower() for h in allowed_hosts)}
    if not is_ip(host) and host not in ("", "0.0.0.0", "::"):
        names.add(host.lower())
    html, csp = page()

    async def explorer(request: Request) -> Response:
        return Response(html, media_type="text/html; charset=utf-8", headers={"content-security-policy": csp})

    async def models(request: Request) -> Response:
        return json_response(200, service.models_info())

    async def health(request: Request) -> Response:
        return json_response(200, encode({"running": pool.running, "queued": pool.queued, "workers": pool.workers,
                                          "queue": pool.queue_size, "models": list(service.models)}))

    def endpoint(name: str) -> Callable[[Request], Awaitable[Any]]:
        async def handle(request: Request) -> Any:
            return await post(name, request)

        return handle

    async def post(name: str, request: Request) -> Any:
        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            return error(415, f"POST a JSON object with Content-Type application/json, not {ctype[:60]!r}")
        try:
            body = await read_body(request, service.limits.max_body)
            req = parse_json(body)
            if name == "generate" and isinstance(req, dict) and req.get("stream") is True:
                return EventStream(service, pool, req)
            job, future = pool.submit(service.prepare(name, req))
        except RequestError as e:
            return error(e.status, str(e))
        except CharRNNError as e:
            return error(422, str(e))
        except Busy:
            return busy(pool)
        except Cancelled as e:
            return error(503, str(e))
        except ClientDisconnect:
            return Response(status_code=204)  # nobody to tell
        if not await until_done(future, request.receive):
            job.cancel()
            return Response(status_code=204)
        try:
            return json_response(200, future.result())
        except RequestError as e:
            return error(e.status, str(e))
        except CharRNNError as e:
            return error(422, str(e))
        except Cancelled as e:
            return error(503, str(e))

    def not_found(request: Request) -> Response:
        return error(404, f"no such page or endpoint: {request.url.path[:80]!r} (the API is under /api: "
                     f"{', '.join(GET_ENDPOINTS + POST_ENDPOINTS)})")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return not_found(request)
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            return error(405, f"{request.method} is not served at {request.url.path[:80]!r}: {allowed} it", exc.headers)
        return error(exc.status_code, str(exc.detail)[:200], exc.headers)

    async def internal(request: Request, exc: Exception) -> Response:
        return error(500, "internal error: the server keeps serving; its log has the details")

    @asynccontextmanager
    async def lifespan(app: Any):
        yield
        pool.stop()

    routes = [Route("/", explorer, methods=["GET"]), Route("/api/models", models, methods=["GET"]),
              Route("/api/health", health, methods=["GET"])]
    routes += [Route(f"/api/{name}", endpoint(name), methods=["POST"]) for name in POST_ENDPOINTS]
    return Starlette(routes=routes, middleware=[Middleware(Guard, token=token, allowed_hosts=frozenset(names))],
                     exception_handlers={HTTPException: http_error, Exception: internal}, lifespan=lifespan)


class EventStream:
    """The ASGI response of a streamed generation (module docstring)."""

    def __init__(self, service: Service, pool: Pool, request: dict[str, Any]) -> None:
        self.service, self.pool, self.request = service, pool, request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from .service import check_fields

        svc = self.service
        try:
            m, kwargs, n, seed = svc.generation(check_fields("generate", self.request))
        except RequestError as e:
            return await error(e.status, str(e))(scope, receive, send)
        sink = Sink(asyncio.get_running_loop())

        def work(job: Any) -> bytes:
            def on_text(piece: str) -> None:
                job.check()
                sink.push(piece)

            return encode(svc.generate(m, kwargs, n, seed, on_text))

        try:
            job, future = self.pool.submit(work)
        except Busy:
            return await busy(self.pool)(scope, receive, send)
        except Cancelled as e:
            return await error(503, str(e))(scope, receive, send)
        future.add_done_callback(lambda f: sink.wake())
        watch = asyncio.ensure_future(wait_disconnect(receive))
        started = False

        async def start() -> None:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream; charset=utf-8"),
                                    (b"x-accel-buffering", b"no")]})

        try:
            while not watch.done():  # a send to a client that has gone returns at once: look each time
                pieces = sink.take()
                if pieces:
                    if not started:
                        await start()
                        started = True
                    data = json.dumps(pieces, ensure_ascii=False)
                    await send({"type": "http.response.body", "body": event("piece", data), "more_body": True})
                    continue
                if future.done():
                    break
                waiting = asyncio.ensure_future(sink.ready.wait())
                await asyncio.wait({waiting, watch}, return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
            if watch.done():
                return  # the client has gone: the finally cancels the job
            try:
                final = event("done", future.result().decode("utf-8"))
            except (RequestError, CharRNNError, Cancelled) as e:
                status = e.status if isinstance(e, RequestError) else 503 if isinstance(e, Cancelled) else 422
                if not started:
                    return await error(status, str(e))(scope, receive, send)
                final = event("error", encode({"error": str(e)}).decode("utf-8"))
            if not started:
                await start()
            await send({"type": "http.response.body", "body": final})
        except OSError:  # the client went away while we wrote
            pass
        finally:
            job.cancel()
            watch.cancel()


def event(name: str, data: str) -> bytes:
    """One server-sent event; `data` is one line of JSON."""
    return f"event: {name}\ndata: {data}\n\n".encode("utf-8")


class Sink:
    """Text pieces from a worker thread to the event loop: the worker pushes, the loop takes all
    that have come since it last looked (one event for many characters when it is busy)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ready = asyncio.Event()
        self._pieces: list[str] = []
        self._lock = threading.Lock()
        self._woken = False

    def push(self, piece: str) -> None:
        with self._lock:
            self._pieces.append(piece)
            if self._woken:
                return
            self._woken = True
        self.loop.call_soon_threadsafe(self.ready.set)

    def wake(self) -> None:
        self.ready.set()

    def take(self) -> str:
        with self._lock:
            pieces, self._pieces, self._woken = self._pieces, [], False
        self.ready.clear()
        return "".join(pieces)


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, at most `limit` bytes (413 beyond, before reading more)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise RequestError(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise RequestError(413, f"the body of {int(declared):,} bytes is above this server's limit of "
                               f"{limit:,} (--max-body)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body is above this server's limit of {limit:,} bytes (--max-body)")
        chunks.append(chunk)
    return b"".join(chunks)


class MalformedRequest(RequestError):
    """A body that is not one strict JSON document."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


def parse_json(body: bytes) -> Any:
    """The body as JSON, read by the one strict reader of JSON (io/readers.py: UTF-8, no NaN or
    Infinity, no key given twice, no lone surrogate, bounded nesting); 400 naming the problem."""
    from ..io.readers import parse_json as strict

    return strict(body, "the request body", MalformedRequest)


async def wait_disconnect(receive: Receive) -> None:
    """Return once the client has gone (the body has been read: only a disconnect can come)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def until_done(future: asyncio.Future, receive: Receive) -> bool:
    """Wait for the future; False when the client goes away first."""
    watch = asyncio.ensure_future(wait_disconnect(receive))
    try:
        await asyncio.wait({future, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    return future.done()


# -- running it ------------------------------------------------------------------------------------

def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one); OSError when it cannot be had."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = info[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def run(app: Any, pool: Pool, sock: socket.socket, access_log: bool = False) -> None:
    """Serve until SIGINT, SIGTERM or SIGHUP; the signal stops every job at once, so that open
    streams end (with an `error` event) and the server is gone within a second or two. uvicorn
    then raises the signal again, for the command line's own handler (its message and status)."""
    import signal
    from contextlib import contextmanager

    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            pool.stopping = True  # every generation stops at its next character
            super().handle_exit(sig, frame)

        @contextmanager
        def capture_signals(self):  # type: ignore[override]
            # uvicorn takes SIGINT and SIGTERM; SIGHUP (a closed terminal) too, unless it is ignored (nohup)
            hup = getattr(signal, "SIGHUP", None)
            taken = (hup is not None and threading.current_thread() is threading.main_thread()
                     and signal.getsignal(hup) is not signal.SIG_IGN)
            previous = signal.signal(hup, self.handle_exit) if taken else None
            with super().capture_signals():
                try:
                    yield
                finally:
                    if taken:  # None: a handler set outside Python, which cannot be put back
                        signal.signal(hup, signal.SIG_DFL if previous is None else previous)

    config = uvicorn.Config(app, log_level="info" if access_log else "warning", access_log=access_log,
                            timeout_graceful_shutdown=1, lifespan="on", server_header=False, ws="none",
                            http="h11", limit_concurrency=max(256, 4 * pool.queue_size), timeout_keep_alive=5)
    Server(config).run(sockets=[sock])
