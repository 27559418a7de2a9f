"""charrnn serve: trained models kept loaded, an explorer in the browser and a JSON API."""

from __future__ import annotations

import argparse
import os

from ._common import command, positive_int

TOKEN_ENV = "CHARRNN_SERVE_TOKEN"
MIN_TOKEN = 16


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number in [0, 65535], got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number in [0, 65535], got {value}")
    return value


@command("serve", "serve models over HTTP: an explorer page in the browser and a JSON API", outputs=(),
         reads={"RUN_OR_CHECKPOINT": "model"})
def _serve(p: argparse.ArgumentParser):
    from ..serve.service import Limits

    d = Limits()
    p.add_argument("runs", metavar="RUN_OR_CHECKPOINT", nargs="+",
                   help="run directories, checkpoint files or shipped models (charrnn models); each is served "
                   "under its name")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; another needs a token)")
    p.add_argument("--port", type=port_number, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--token", default=None,
                   help=f"require 'Authorization: Bearer TOKEN' on every API request (default: ${TOKEN_ENV}); "
                   f"at least {MIN_TOKEN} characters")
    p.add_argument("--allow-host", metavar="NAME", action="append", default=[],
                   help="a host name the Host header may carry besides localhost and IP addresses (repeatable)")
    p.add_argument("--max-body", type=positive_int, default=d.max_body,
                   help=f"bytes of a request (default {d.max_body})")
    p.add_argument("--max-text", type=positive_int, default=d.max_text,
                   help=f"characters of a text to score, inspect or compare (default {d.max_text})")
    p.add_argument("--max-length", type=positive_int, default=d.max_length,
                   help=f"characters one sample may generate (default {d.max_length})")
    p.add_argument("--max-samples", type=positive_int, default=d.max_samples,
                   help=f"samples of one generate request (default {d.max_samples})")
    p.add_argument("--max-values", type=positive_int, default=d.max_values,
                   help=f"numbers in one inspect answer (default {d.max_values})")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="threads computing answers (default: the usable cores, at least 2)")
    p.add_argument("--queue", type=positive_int, default=64,
                   help="requests that may wait for a worker; beyond them 503 (default 64)")
    p.add_argument("--access-log", action="store_true", help="log every request on stderr")

    def run(a: argparse.Namespace) -> int:
        import sys

        from ..errors import ConfigError
        from ..serve import require

        require()
        from ..serve.app import create_app, is_loopback, listen
        from ..serve.app import run as run_server
        from ..serve.pool import Pool
        from ..serve.service import Service, load_models
        from ..threads import set_threads, usable_cpus

        token = a.token if a.token is not None else (os.environ.get(TOKEN_ENV) or None)
        if token is not None and (len(token) < MIN_TOKEN or not token.isascii() or not token.isprintable()
                                  or " " in token):
            raise ConfigError(f"the token must be at least {MIN_TOKEN} printable ASCII characters without spaces")
        if token is None and not is_loopback(a.host):
            raise ConfigError(f"--host {a.host} can be reached from other machines: give a token "
                              f"(--token T or {TOKEN_ENV}), which every request must then carry")
        limits = Limits(a.max_body, a.max_text, a.max_length, a.max_samples, a.max_values)
        service = Service(load_models(a.runs), limits)  # every model refused in one line before listening
        try:
            sock = listen(a.host, a.port)
        except OSError as e:
            raise ConfigError(f"cannot listen on {a.host}:{a.port}: {e.strerror or e}") from None
        set_threads(1)  # the pool's workers are the parallelism: one BLAS thread each
        workers = a.workers or max(2, usable_cpus())
        pool = Pool(workers, a.queue)
        app = create_app(service, pool, token, a.host, tuple(a.allow_host))
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        names = ", ".join(service.models)
        print(f"charrnn serve: {len(service.models)} model(s) ({names}) at http://{shown}:{port}/ "
              f"({workers} workers{', token required' if token else ''}; Ctrl-C stops)", flush=True)
        try:
            run_server(app, pool, sock, access_log=a.access_log)
        finally:
            pool.stop()
            sock.close()
        sys.stdout.flush()
        return 0

    return run
