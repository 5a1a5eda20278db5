"""Serve an ASGI app with uvicorn in a daemon thread (local stand-ins and tests)."""
import threading
import time

import uvicorn


def serve_in_thread(app, host="127.0.0.1", port=0, timeout=10.0):
    """Start `app` on host:port (0 = any free port); return (base_url, stop)."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False,
        lifespan="auto", timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()

    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn server exited before it started")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError("uvicorn server did not start in time")
        time.sleep(0.01)

    # port=0 binds a free port: read the real one back from the listening socket.
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://{host}:{bound_port}"

    def stop():
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():  # a stuck connection: stop waiting for it
            server.force_exit = True
            thread.join(timeout)

    return url, stop
