#!/usr/bin/env python3
"""The few AMQP 0-9-1 calls the shell scripts need, with nothing but the standard library
(no client library to install on a fresh machine, and no root: rabbitmqctl needs the node's
cookie, this needs only the URL's credentials).

    amqp.py check-quorum                      declare a durable quorum queue, then delete it
    amqp.py delete [--queue Q]... [--exchange X]...
    amqp.py delete --prefix P [--retry-delays 5,30,120,600]
                                              everything the worker declares for prefix P
                                              (src/queue/topology.rs), and the --queue/--exchange

The broker is ASSET_WORKER_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f, the
worker's). Exit status: 0 done, 2 no connection or login refused, 3 the broker refused an
operation. Messages go to stdout, one line each; the password is never printed.
"""

import argparse
import os
import socket
import ssl
import struct
import sys
from urllib.parse import unquote, urlsplit

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2f"


class Refused(Exception):
    """The broker closed the channel or connection: (reply code, reply text)."""


class Broker:
    """One connection with one channel open, driven method by method (no content frames)."""

    def __init__(self, url):
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise Refused("ASSET_WORKER_AMQP_URL must start with amqp:// or amqps://")
        self.user = unquote(parts.username or "guest")
        password = unquote(parts.password or "guest")
        self.vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        host = parts.hostname or "localhost"
        port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
        self.where = f"{host}:{port}"
        sock = socket.create_connection((host, port), timeout=10)
        if parts.scheme == "amqps":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self.sock = sock
        try:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            self.expect(10, 10)  # connection.start
            response = f"\0{self.user}\0{password}".encode()
            self.send(0, 10, 11, table(b"") + shortstr("PLAIN") + longstr(response) + shortstr("en_US"))
            channel_max, frame_max, _heartbeat = struct.unpack(">HIH", self.expect(10, 30)[:8])
            self.send(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0))  # tune-ok, no heartbeats
            self.send(0, 10, 40, shortstr(self.vhost) + shortstr("") + b"\x00")  # connection.open
            self.expect(10, 41)
            self.send(1, 20, 10, shortstr(""))  # channel.open
            self.expect(20, 11)
        except (OSError, Refused) as e:
            # RabbitMQ drops the connection without a word when the login is refused.
            raise ConnectionError(
                f"could not log in at {self.where} as {self.user!r} to vhost {self.vhost!r} "
                f"({e or 'connection closed'}): wrong user, password or vhost in the URL?"
            ) from e

    def send(self, channel, class_id, method_id, args):
        payload = struct.pack(">HH", class_id, method_id) + args
        self.sock.sendall(struct.pack(">BHI", 1, channel, len(payload)) + payload + b"\xce")

    def recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise Refused("the broker closed the connection")
            data += chunk
        return data

    def expect(self, class_id, method_id):
        """The arguments of the next (class_id, method_id) method frame."""
        while True:
            kind, _channel, size = struct.unpack(">BHI", self.recv_exact(7))
            payload = self.recv_exact(size + 1)[:-1]
            if kind != 1:  # heartbeats: none were asked for, skipped anyway
                continue
            got = struct.unpack(">HH", payload[:4])
            if got in ((10, 50), (20, 40)):  # connection.close, channel.close
                code = struct.unpack(">H", payload[4:6])[0]
                raise Refused(f"{code} {payload[7:7 + payload[6]].decode(errors='replace')}")
            if got == (class_id, method_id):
                return payload[4:]

    def declare_quorum(self, queue):
        arguments = shortstr("x-queue-type") + b"S" + longstr(b"quorum")
        self.send(1, 50, 10, struct.pack(">H", 0) + shortstr(queue) + b"\x02" + table(arguments))  # durable
        self.expect(50, 11)

    def delete_queue(self, queue):
        """Deletes `queue` (a missing one too); the number of messages it held."""
        self.send(1, 50, 40, struct.pack(">H", 0) + shortstr(queue) + b"\x00")
        return struct.unpack(">I", self.expect(50, 41)[:4])[0]

    def delete_exchange(self, exchange):
        self.send(1, 40, 20, struct.pack(">H", 0) + shortstr(exchange) + b"\x00")
        self.expect(40, 21)

    def close(self):
        self.send(0, 10, 50, struct.pack(">H", 200) + shortstr("done") + struct.pack(">HH", 0, 0))
        self.expect(10, 51)
        self.sock.close()


def shortstr(text):
    data = text.encode()
    return struct.pack("B", len(data)) + data


def longstr(data):
    return struct.pack(">I", len(data)) + data


def table(encoded_fields):
    return struct.pack(">I", len(encoded_fields)) + encoded_fields


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check-quorum", help="declare a durable quorum queue, then delete it")
    delete = commands.add_parser("delete", help="delete queues and exchanges (missing ones too)")
    delete.add_argument("--queue", action="append", default=[])
    delete.add_argument("--exchange", action="append", default=[])
    delete.add_argument("--prefix", help="the whole topology of this queue prefix")
    delete.add_argument("--retry-delays",
                        default=os.environ.get("ASSET_WORKER_RETRY_DELAYS_SECONDS") or "5,30,120,600",
                        help="the prefix's retry delays (default ASSET_WORKER_RETRY_DELAYS_SECONDS's)")
    args = parser.parse_args()
    if args.command == "delete" and args.prefix:
        p = args.prefix
        delays = [d.strip() for d in args.retry_delays.strip("[]").split(",") if d.strip()]
        args.queue += [f"{p}.process", f"{p}.process.dead", f"{p}.results", f"{p}.sign"]
        args.queue += [f"{p}.retry.{d}s" for d in delays]
        args.exchange += [f"{p}.dlx", f"{p}.results"]
    try:
        broker = Broker(os.environ.get("ASSET_WORKER_AMQP_URL") or DEFAULT_URL)
    except (OSError, Refused) as e:
        print(f"cannot use the broker: {e}")
        return 2
    try:
        if args.command == "check-quorum":
            queue = f"amqp-py-quorum-check-{os.getpid()}"
            broker.declare_quorum(queue)
            broker.delete_queue(queue)
            print(f"a quorum queue was declared and deleted at {broker.where}")
        else:
            for queue in args.queue:
                print(f"deleted queue {queue} ({broker.delete_queue(queue)} messages in it)")
            for exchange in args.exchange:
                broker.delete_exchange(exchange)
                print(f"deleted exchange {exchange}")
        broker.close()
    except (OSError, Refused) as e:
        print(f"at {broker.where}, the broker refused: {e}")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
