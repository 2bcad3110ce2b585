"""bench/slow_clients_bench.py's own parts, in a few seconds: its arguments, its
percentiles and memory figures, its pass criteria, and its load generator against a
small loopback server (the full load against the real server is the bench's job)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
from pathlib import Path

import pytest

from sealdrop.bench import slow_clients_bench as bench


def test_percentiles_are_nearest_rank() -> None:
    twenty = [float(n) for n in range(1, 21)]
    assert bench.percentile(twenty, 0.5) == 10.0
    # One slow try in 20 is the p99: the max.
    assert bench.percentile(twenty, 0.99) == 20.0
    assert bench.percentile([3.0], 0.99) == 3.0
    assert bench.percentile([], 0.5) != bench.percentile([], 0.5)  # NaN


def test_quick_and_default_arguments() -> None:
    args = bench.parse_args([])
    assert (args.heads, args.bodies, args.tries, args.timeout) == (2000, 500, 20, 15.0)
    assert args.servers == ["this", "previous", "onionshare"] and args.reconnect
    # The trickled bodies are above the server's 500 B/s floor.
    assert args.body_rate > 500
    quick = bench.parse_args(["--quick", "--servers", "this", "--no-reconnect"])
    assert (quick.heads, quick.bodies, quick.tries, quick.hold) == (200, 50, 5, 20.0)
    assert quick.servers == ["this"] and not quick.reconnect
    assert bench.parse_args(["--quick", "--bodies", "0"]).bodies == 0


@pytest.mark.parametrize(
    "argv", [["--servers", "nginx"], ["--tries", "0"], ["--body-rate", "10000000"]]
)
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(argv)


def test_memory_of_a_process_group() -> None:
    pids = bench.group_pids(os.getpgid(0))
    assert os.getpid() in pids
    rss, pss = bench.memory_kib([os.getpid()])
    assert rss > 1024 and 0 < pss <= rss
    assert bench.memory_kib([2**22 + 1]) == (0, 0)  # gone: counts nothing


def test_the_accept_queue_is_read_from_a_listening_socket(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000800 00:00000000 00000000\n"
        "   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000\n"
    )
    assert bench.accept_queue(0x1F90, table) == 2048
    assert bench.accept_queue(80, table) == 0
    with socket.socket() as listener:
        listener.bind((bench.HOST, 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        clients = [socket.create_connection((bench.HOST, port)) for _ in range(3)]
        try:
            assert bench.accept_queue(port) == 3
        finally:
            for client in clients:
                client.close()


def test_bodies_are_spread_among_heads() -> None:
    kinds = bench.interleave(2000, 500)
    assert len(kinds) == 2500 and sum(kinds) == 500
    assert sum(kinds[:250]) == 50  # a tenth of the ramp has a tenth of the bodies


def test_criteria_fail_on_one_timeout_in_twenty() -> None:
    args = bench.parse_args([])
    row = bench.Row(
        "this",
        heads_at_start=2000,
        bodies_at_start=500,
        pages=[bench.Try(True, 0.05)] * 20,
        submissions=[bench.Try(True, 0.5)] * 19 + [bench.Try(False, 15.0)],
        rss_kib=200 * 1024,
        final={"bodies": {"closed_by_server": 0}},
    )
    verdicts = {name: met for name, met, _ in bench.criteria(row, args)}
    assert verdicts == {
        "2000 heads and 500 bodies connected at once": True,
        "GET / p99 < 1 s": True,
        "1 MB submission p99 < 1 s": False,
        "total RSS < 256 MiB": True,
        "no body trickling at 600 B/s (above the floor) cut": True,
    }


def test_the_load_holds_reopens_and_closes_every_connection(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """10 heads and 4 bodies against a server that closes each head once it has its
    first bytes: heads are reopened, bodies send a multipart head and keep sending."""
    received: dict[str, bytearray] = {}
    open_now = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_now[0] += 1
        data = bytearray(await reader.read(4096))
        key = f"{id(writer)}"
        received[key] = data
        if not data.startswith(b"GET "):  # a head is closed at once: a head deadline, early
            while piece := await reader.read(65536):
                data += piece
        writer.close()
        open_now[0] -= 1

    async def scenario() -> None:
        server = await asyncio.start_server(handle, bench.HOST, 0)
        port = server.sockets[0].getsockname()[1]
        config = bench.LoadConfig(
            port=port,
            heads=10,
            bodies=4,
            ramp=0.2,
            duration=2.5,
            head_path="/",
            body_path="/submit",
            body_field="files",
            body_rate=600,
        )
        await bench.run_load(config)
        await asyncio.sleep(0.2)
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    done = json.loads(lines[-1])
    assert done["event"] == "done"
    heads, bodies = done["heads"], done["bodies"]
    assert heads["closed_by_server"] >= 10 and heads["established"] > 10
    assert bodies["established"] == 4 and bodies["closed_by_server"] == 0
    assert heads["open"] == bodies["open"] == 0 and open_now[0] == 0
    posts = [data for data in received.values() if data.startswith(b"POST ")]
    assert len(posts) == 4
    for data in posts:
        assert re.search(rb"Content-Length: 67108864\r\n", data)
        # The head, the file part's head and at least one piece (1,200 bytes every 2 s).
        assert b'name="files"; filename="trickle.bin"' in data and data.count(b"b") >= 1200


def test_a_visit_that_gets_no_answer_counts_as_the_whole_timeout() -> None:
    with socket.socket() as listener:  # listens, never answers: a queued visitor
        listener.bind((bench.HOST, 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        result = bench.visit(port, bench.get_request(), 0.3, (200,))
    assert not result.ok and result.seconds == 0.3 and result.detail == "TimeoutError"


def test_a_visit_reads_the_whole_answer_and_checks_it() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world"

    async def scenario() -> list[bench.Try]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, bench.HOST, 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return [
                await asyncio.to_thread(bench.visit, port, bench.get_request(), 5, (200,), marker)
                for marker in (b"world", b"receipt")
            ]

    found, missing = asyncio.run(scenario())
    assert found.ok and found.seconds < 5 and found.detail == "status 200, 11 bytes"
    assert not missing.ok and missing.seconds == 5
