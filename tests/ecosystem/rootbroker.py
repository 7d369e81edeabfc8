"""A stand-in for sudo in tests: an unprivileged process runs commands as root through it.

``python3 rootbroker.py serve SOCKET LOG`` (as root) runs each command a
client sends and appends its argv to LOG; ``python3 rootbroker.py run
SOCKET ARGV...`` is the client, used as ``root_helper``: it passes its
stdin, prints the command's stdout and stderr and exits with its status,
as ``sudo ARGV...`` would. The socket is the only way from the
unprivileged process to root, so whatever root did went through the root
helper, and LOG lists it. Test equipment only: it runs anything it is sent.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys


def _recv_all(conn: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def serve(path: str, log: str) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o666)
    server.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        with conn:
            request = json.loads(_recv_all(conn))
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(request["argv"]) + "\n")
            try:
                done = subprocess.run(
                    request["argv"], input=request["stdin"].encode(), capture_output=True, timeout=120
                )
                reply = {
                    "rc": done.returncode,
                    "out": done.stdout.decode(errors="replace"),
                    "err": done.stderr.decode(errors="replace"),
                }
            except OSError as err:
                reply = {"rc": 127, "out": "", "err": f"rootbroker: {err}\n"}
            conn.sendall(json.dumps(reply).encode())


def run(path: str, argv: list[str]) -> int:
    stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(path)
    client.sendall(json.dumps({"argv": argv, "stdin": stdin}).encode())
    client.shutdown(socket.SHUT_WR)
    reply = json.loads(_recv_all(client))
    sys.stdout.write(reply["out"])
    sys.stderr.write(reply["err"])
    return int(reply["rc"])


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        sys.exit(run(sys.argv[2], sys.argv[3:]))
