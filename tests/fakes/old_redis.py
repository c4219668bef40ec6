"""A Redis server of another version, as a real process: just enough RESP for a handshake.

    python tests/fakes/old_redis.py VERSION

Listens on 127.0.0.1 (a free port, printed as the first line of stdout) and answers HELLO
(RESP2 or RESP3, as Redis 6+ does), PING, INFO (with `redis_version:VERSION`), CLIENT and
SELECT; any other command gets the error a real server gives an unknown command. Only
Debian's 7.0 is installable here, so an older server can be had no other way.
"""

from __future__ import annotations

import socketserver
import sys


def _read_command(stream) -> list[bytes] | None:
    """One command: a RESP array of bulk strings, or an inline line."""
    line = stream.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        return line.split()
    words = []
    for _ in range(int(line[1:])):
        size = int(stream.readline()[1:])
        words.append(stream.read(size + 2)[:-2])
    return words


class Handler(socketserver.StreamRequestHandler):
    version = "6.2.0"

    def handle(self) -> None:
        while (command := _read_command(self.rfile)) is not None:
            name = command[0].upper() if command else b""
            if name == b"HELLO":
                reply = self._hello(int(command[1]) if len(command) > 1 else 2)
            elif name == b"PING":
                reply = b"+PONG\r\n"
            elif name == b"INFO":
                info = (f"# Server\r\nredis_version:{self.version}\r\nredis_mode:standalone"
                        "\r\n").encode()
                reply = b"$%d\r\n%s\r\n" % (len(info), info)
            elif name in {b"CLIENT", b"SELECT"}:
                reply = b"+OK\r\n"
            else:
                reply = b"-ERR unknown command '%s'\r\n" % name.lower()
            self.wfile.write(reply)


    def _hello(self, protocol: int) -> bytes:
        fields = {"server": "redis", "version": self.version, "proto": protocol, "id": 1,
                  "mode": "standalone", "role": "master"}
        body = b"".join(b":%d\r\n" % value if isinstance(value, int) else
                        b"+%s\r\n" % str(value).encode()
                        for pair in fields.items() for value in pair)
        body += b"+modules\r\n*0\r\n"
        count = len(fields) + 1
        # RESP3 answers with a map; RESP2 with the same pairs as a flat array.
        return (b"%%%d\r\n" % count if protocol == 3 else b"*%d\r\n" % (2 * count)) + body


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    Handler.version = sys.argv[1]
    with Server(("127.0.0.1", 0), Handler) as server:
        print(server.server_address[1], flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
