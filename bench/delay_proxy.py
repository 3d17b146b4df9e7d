#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that adds latency: what a worker in Frankfurt sees against a real
bucket, put in front of SeaweedFS for bench/e2e.sh (issue 8).

    delay_proxy.py UPSTREAM_PORT RTT_MS   → prints the port it listens on, then serves until
                                            killed or its parent script ends

Every chunk read from one side is written to the other RTT/2 ms later, in order: latency
without a bandwidth cap, as a long fat network behaves. A connection costs its handshake's
round trip too (the upstream connection is made when the client's arrives, and the client's
first bytes wait RTT/2 like all others). Only ever connects to 127.0.0.1.
"""
import asyncio
import os
import sys
import time

CHUNK = 64 * 1024


async def pipe(reader, writer, delay):
    """Copies reader → writer, each chunk `delay` seconds after it arrived."""
    queue = asyncio.Queue()

    async def pump():
        while True:
            data = await reader.read(CHUNK)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                return

    async def drain():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(pump(), drain())
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main(upstream_port, rtt_ms):
    delay = rtt_ms / 2000.0

    async def serve(client_reader, client_writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, upstream_writer, delay),
            pipe(upstream_reader, client_writer, delay),
        )

    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    # Serve until killed (bench/e2e.sh's cleanup) or orphaned (the script died): bounded.
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(1)
    server.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
