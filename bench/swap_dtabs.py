#!/usr/bin/env python3
"""Replaces a router's dtab on a fixed schedule, for `make bench`'s dtab-swap run.

Usage: swap_dtabs.py ADMIN_PORT ROUTER SECONDS EVERY_MS FILE...

Every EVERY_MS for SECONDS, PUTs the next FILE (in turn) to http://127.0.0.1:ADMIN_PORT/dtab/ROUTER over one
kept-alive connection, and prints "SUCCEEDED SENT" (a success is a 204). One process for the whole run, so that
the swapping costs the machine next to nothing beside the load it runs under (a process per PUT would).
"""
import http.client
import sys
import time


def main() -> int:
    port, router, seconds, every_ms = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    bodies = [open(path, "rb").read() for path in sys.argv[5:]]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    sent = ok = 0
    start = time.monotonic()
    while True:
        due = start + sent * every_ms / 1000.0
        if due >= start + seconds:
            break
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        try:
            conn.request("PUT", f"/dtab/{router}", body=bodies[sent % len(bodies)],
                         headers={"Content-Type": "application/dtab"})
            resp = conn.getresponse()
            resp.read()
            ok += resp.status == 204
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
        sent += 1
    print(ok, sent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
