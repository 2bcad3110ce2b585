"""HTTP by hand, for what http.client cannot do: keep sending while the answer is read."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


def whole_response(answer: bytes | bytearray) -> bool:
    """True once `answer` holds a whole response (headers and Content-Length bytes)."""
    head, found, page = answer.partition(b"\r\n\r\n")
    lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return bool(found and lengths) and len(page) >= int(lengths[0].split(b":")[1])


def send_while_reading(
    server: Any,
    content_type: str,
    body: bytes,
    path: str = "/submit",
    headers: dict[str, str] | None = None,
) -> tuple[list[str], bytes]:
    """POST `body` in 64 KiB pieces, like a browser, from one thread while another reads
    the answer; return the errors either side met and all the bytes answered."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n{extra}"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    errors: list[str] = []
    answer = bytearray()
    with socket.create_connection((server.host, server.port), timeout=30) as sock:

        def send() -> None:
            try:
                sock.sendall(head)
                for start in range(0, len(body), 64 * 1024):
                    sock.sendall(body[start : start + 64 * 1024])
                    time.sleep(0.001)
            except OSError as error:
                errors.append(f"sending: {error!r}")

        sender = threading.Thread(target=send)
        sender.start()
        try:
            while not whole_response(answer) and (piece := sock.recv(65536)):
                answer += piece
        except OSError as error:
            errors.append(f"reading: {error!r}")
        sender.join(timeout=30)
    return errors, bytes(answer)
