#!/usr/bin/env python3
"""A real WebSocket server for nightjar's websocket tests, on Python's `websockets` library.

It serves the same paths over plain TCP and over TLS:
  /echo         echoes every message back (text as text, binary as binary)
  /refuse       refuses the upgrade: 403 "no websockets for you"
  /auth         401 unless `Authorization: Bearer let-me-in` (or basic auth probe:let-me-in);
                then greets with
                "welcome ua=<User-Agent> probe=<X-Probe>" and echoes
  /close-early  accepts the upgrade, then closes at once with code 4000, reason "going away"
  /whoami       sends the client's address (IP only), then echoes

Usage: websocket_echo.py PORT TLS_PORT CERT_CHAIN KEY
It prints "ready" once both ports listen, and exits when its standard input closes (the test
process that started it has ended).
"""

import asyncio
import http
import ssl
import sys
import threading

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

TOKENS = ("Bearer let-me-in", "Basic cHJvYmU6bGV0LW1lLWlu")  # probe:let-me-in


def process_request(connection, request):
    if request.path == "/refuse":
        return connection.respond(http.HTTPStatus.FORBIDDEN, "no websockets for you\n")
    if request.path == "/auth" and request.headers.get("Authorization") not in TOKENS:
        return connection.respond(http.HTTPStatus.UNAUTHORIZED, "who are you?\n")
    if request.path not in ("/echo", "/auth", "/close-early", "/whoami"):
        return connection.respond(http.HTTPStatus.NOT_FOUND, "no such path\n")
    return None


async def handler(ws):
    path = ws.request.path
    if path == "/close-early":
        await ws.close(4000, "going away")
        return
    if path == "/auth":
        headers = ws.request.headers
        await ws.send(
            "welcome ua=%s probe=%s"
            % (headers.get("User-Agent", ""), headers.get("X-Probe", ""))
        )
    if path == "/whoami":
        await ws.send(ws.remote_address[0])
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        # A failing check gives up at its deadline without a close frame.
        pass


def exit_when_stdin_closes():
    sys.stdin.read()
    sys.stdout.flush()
    import os

    os._exit(0)


async def main():
    port, tls_port, cert, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    plain = await serve(handler, "127.0.0.1", port, process_request=process_request)
    secure = await serve(
        handler, "127.0.0.1", tls_port, process_request=process_request, ssl=context
    )
    print("ready", flush=True)
    async with plain, secure:
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    asyncio.run(main())
