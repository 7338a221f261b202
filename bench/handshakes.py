#!/usr/bin/env python3
"""Full mutual-TLS handshakes per second a server accepts, for `make bench`.

Usage: handshakes.py HOST:PORT CERT KEY CA SERVER_NAME [SECONDS]

One client connection at a time, a new TLS session each (no resumption): connect, handshake with a client
certificate, close. Prints the rate, or "n/a" if no handshake succeeded. The same client measures every
server, so the figures compare servers, not absolute limits (the client's own cost is in them).
"""
import socket
import ssl
import sys
import time


def main() -> int:
    host, port = sys.argv[1].rsplit(":", 1)
    cert, key, ca, name = sys.argv[2:6]
    seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 5.0
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    done, deadline = 0, time.monotonic() + seconds
    start = time.monotonic()
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname=name, session=None):
                    done += 1
        except OSError as e:
            print(f"handshake failed: {e}", file=sys.stderr)
            break
    elapsed = time.monotonic() - start
    print(f"{done / elapsed:.0f}" if done else "n/a")
    return 0


if __name__ == "__main__":
    sys.exit(main())
