#!/usr/bin/env python3
"""Tell `make run` whether it can listen on HOST:PORT, before it prints a URL that would not work.

    python scripts/check_port.py localhost 5000

Exits 0 when the port is free; otherwise prints what is wrong and how to pick another port
(`make run PORT=5050`) and exits 1. It binds the way the development server will (the address
family chosen from the host, SO_REUSEADDR on), so a port left in TIME_WAIT by a previous run
counts as free, as it does for the server.
"""
from __future__ import annotations

import errno
import socket
import sys

HINT = "choose another port: make run PORT=5050 (and open that port's URL)"


def problem(host: str, port_text: str) -> str | None:
    """Why the development server could not listen on host:port, or None when it can."""
    try:
        port = int(port_text)
    except ValueError:
        return f"PORT={port_text!r} is not a number; {HINT}"
    if not 1 <= port <= 65535:
        return f"PORT={port} is out of range (1-65535); {HINT}"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except socket.gaierror as exc:
        return f"HOST={host!r} cannot be resolved ({exc.strerror}); try make run HOST=localhost"
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (f"port {port} on {host} is already in use (another siwa-web, or another "
                    f"program, listens there); stop it, or {HINT}")
        if exc.errno == errno.EACCES:
            return f"port {port} on {host} needs privileges this user lacks; {HINT}"
        return f"cannot listen on {host}:{port}: {exc.strerror}; {HINT}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: check_port.py HOST PORT", file=sys.stderr)
        return 2
    found = problem(*argv)
    if found:
        print(f"make run: {found}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
