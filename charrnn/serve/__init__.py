"""`charrnn serve`: trained models kept loaded, an explorer page in the browser and a JSON API.

    service.py    what the API answers, without HTTP: the served models, each endpoint's fields
                  checked, the answers computed through the Python API (charrnn.api) and the
                  diagnostics; the limits of one request
    pool.py       the bounded pool of worker threads that computes them off the event loop
    app.py        the ASGI application (Starlette): the safety checks every request passes, the
                  routes, server-sent events, and running it on uvicorn
    explorer.html the page served at /, with its script and style inline

This is the only web code of the package, and nothing outside it imports it but the `serve`
command; Starlette and uvicorn are the optional extra `charrnn[serve]`.
"""

from __future__ import annotations

from ..errors import ConfigError

EXTRA = "serve"


def require() -> None:
    """Refuse in one line, naming the extra, when Starlette or uvicorn is missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"charrnn serve needs Starlette and uvicorn ({e.name or 'one'} is not installed): "
                          f"pip install 'charrnn[{EXTRA}]'") from None
