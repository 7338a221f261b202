#!/usr/bin/env python3
"""The upstream of the abuse suite (mesh/abuse.sh, mesh/abuse_test.py): a tiny HTTP/1.1 echo server.

Run: `mesh/abuse_upstream.py PORT LOG` — listens on 127.0.0.1:PORT and appends one JSON line per request head it
receives to LOG ({"method", "path", "headers": [[name, value], ...], "at"}), so a test can prove that a request
(a smuggled one, say) never reached it. Every request is answered 200 with a JSON body describing what arrived:
method, path, the headers in order, and how many body bytes were read (Content-Length and chunked bodies both
read; a malformed chunked body is answered 400 and the connection closed). `/slow?ms=N` waits N ms first.
Python 3 standard library only.
"""

import json
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class BadBody(Exception):
    """The request body did not parse (a bad chunk size, a missing CRLF) or ended early."""


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "abuse-upstream"
    # A connection the sidecar keeps in its pool but never uses again is dropped after this (a thread each).
    timeout = 60

    def setup(self):
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm holds the body back until the
        # sidecar's delayed ACK (40 ms a response).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __getattr__(self, name):
        # Every method (GET, POST, PUT, whatever a test sends) is answered the same way.
        if name.startswith("do_"):
            return self.answer
        raise AttributeError(name)

    def log_message(self, format, *args):  # noqa: A002 — the base class's signature
        pass  # one JSON line per request in the log file instead (see answer)

    def answer(self):
        headers = [[name, value] for name, value in self.headers.items()]
        self.server.log_request_head({"method": self.command, "path": self.path, "headers": headers, "at": time.time()})
        try:
            body_length = self.read_body()
        except BadBody as error:
            self.reply(400, {"error": str(error)}, close=True)
            return
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/slow":
            ms = urllib.parse.parse_qs(url.query).get("ms", ["0"])[0]
            time.sleep(min(int(ms), 60_000) / 1000)
        self.reply(200, {"method": self.command, "path": self.path, "headers": headers, "body_length": body_length})

    def read_body(self):
        """Reads (and drops) the request body; returns how many bytes it had."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self.read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return 0
        try:
            left = int(length)
        except ValueError:
            raise BadBody(f"bad Content-Length {length!r}") from None
        total = 0
        while left > 0:
            data = self.rfile.read(min(left, 65536))
            if not data:
                raise BadBody(f"body ended after {total} of {length} bytes")
            total += len(data)
            left -= len(data)
        return total

    def read_chunked(self):
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise BadBody("chunk size line cut off")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadBody(f"bad chunk size {size_text!r}") from None
            if size == 0:
                break
            data = self.rfile.read(size)
            if len(data) != size:
                raise BadBody("chunk cut off")
            total += size
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BadBody("chunk not followed by CRLF")
        while True:  # trailers, up to the blank line
            line = self.rfile.readline(8192)
            if not line:
                raise BadBody("trailers cut off")
            if line in (b"\r\n", b"\n"):
                return total

    def reply(self, status, document, close=False):
        body = json.dumps(document).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        try:
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the sidecar gave up on this request (its client went away)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address, log_path):
        super().__init__(address, Echo)
        self.log_lock = threading.Lock()
        self.log_file = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 — open for the server's life

    def log_request_head(self, entry):
        with self.log_lock:
            self.log_file.write(json.dumps(entry) + "\n")
            self.log_file.flush()


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: abuse_upstream.py PORT LOG")
    server = Server(("127.0.0.1", int(sys.argv[1])), sys.argv[2])
    print(f"abuse upstream listening on 127.0.0.1:{sys.argv[1]}, logging requests to {sys.argv[2]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
