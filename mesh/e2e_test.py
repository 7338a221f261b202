#!/usr/bin/env python3
"""End-to-end test of a running forex mesh (started by `mesh/mesh.sh up`).

Run: `python3 mesh/e2e_test.py -v` or `python3 -m unittest -v mesh/e2e_test.py`
(`make test` does both: see mesh/e2e.sh). Python 3 standard library only.

Environment: MESH_NET (default 127.0) gives the addresses, as in mesh/mesh.sh;
E2E_SEED (default 20161) seeds of the random conversions.

What it checks, through HAProxy and every sidecar's admin API: sidecars answer ping
and ready; 30 random conversions equal what the ECB CSV shipped with the services
says; the HTML form shows the figure; metrics count ingress and egress traffic; a
dtab change on forex-converter's sidecar moves traffic to a dead address (5xx, 502s
in its metrics) and back, on every sidecar at once (the egress dtab is mesh-wide); malformed dtabs and stale ETags are refused without
changing anything; the delegator explains /svc/forex-rate down to the fs namer; admin writes need the admin
token (401 without it). Zero trust, on forex-rate's ingress: plaintext is refused, TLS without a client
certificate fails, a mesh identity that is not its caller (forex-web) gets 403 naming it, its caller
(forex-converter) gets 200 and its l5d-dtab is honoured, and the sidecar counts the refusals; a private
sidecar shows l5d-dtab honoured from an identity in allowContext and dropped from one that is only allowed.
"""

import csv
import datetime as dt
import decimal
import http.client as http_client
import io
import json
import os
import random
import re
import socket
import ssl
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from decimal import Decimal
from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mesh"))
import meshlib  # noqa: E402 — shared helpers for live-mesh tests

MESH_NET = os.environ.get("MESH_NET", "127.0")
PUBLIC = f"http://{MESH_NET}.0.1:8080"
RATE_INGRESS = (f"{MESH_NET}.3.1", 4140)
WEB_INGRESS = (f"{MESH_NET}.1.1", 4140)
REPO_ROOT = Path(__file__).resolve().parent.parent
SWITCHYARD = Path(os.environ.get("BIN_DIR", REPO_ROOT / "target" / "release")) / "switchyard"
ADMIN = {
    "forex-web": f"http://{MESH_NET}.1.1:9990",
    "forex-converter": f"http://{MESH_NET}.2.1:9990",
    "forex-rate": f"http://{MESH_NET}.3.1:9990",
}
DEAD_RATE = f"/$/inet/{MESH_NET}.3.99/4140"
SEED = int(os.environ.get("E2E_SEED", "20161"))
ECB_ZIP = Path(__file__).resolve().parent.parent / "services" / "data" / "eurofxref-hist.zip"
# ISO 4217 minor units of the currencies in the ECB file that do not use 2.
MINOR_UNITS = {"JPY": 0, "KRW": 0, "ISK": 0}
# How long to wait for something that becomes true eventually (not a performance bound).
EVENTUALLY_SECS = 15


# --------------------------------------------------------------------------------------
# HTTP


class Reply:
    """A response: status, headers and body, whatever the status."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.text)

    def __repr__(self):
        return f"HTTP {self.status}: {self.text[:300]!r}"


def http(method, url, body=None, headers=None, timeout=10):
    """One request; HTTP errors are returned, not raised."""
    return Reply(*meshlib.request(method, url, body, headers, timeout))


def get(url, **kwargs):
    return http("GET", url, **kwargs)


def convert(date, source, target, amount):
    query = urllib.parse.urlencode({"date": date, "from": source, "to": target, "amount": amount})
    return get(f"{PUBLIC}/api/convert?{query}")


def eventually(check, what):
    """Calls `check` until it returns a truthy value or EVENTUALLY_SECS pass."""
    return meshlib.eventually(check, what, EVENTUALLY_SECS, 0.2)


# --------------------------------------------------------------------------------------
# Mutual TLS, as a peer sidecar would speak it


def identity_files(name):
    """(certificate chain, key) of a mesh identity that `mesh/mesh.sh up` issued."""
    folder = Path(meshlib.mesh_env()["IDENTITY_DIR"]) / name
    return folder / f"{name}.pem", folder / f"{name}.key"


def spiffe_id(name):
    return f"spiffe://{meshlib.mesh_env()['TRUST_DOMAIN']}/svc/{name}"


def tls_get(address, service, identity=None, path="/health", headers=None):
    """GET over TLS to a sidecar's ingress at `address`, verifying it is `service` (server name
    <service>.<trust domain>, the mesh CA), presenting `identity`'s certificate (none when None).
    Returns a Reply; a refused handshake raises ssl.SSLError or OSError."""
    env = meshlib.mesh_env()
    context = ssl.create_default_context(cafile=env["CA_CERT"])
    if identity:
        context.load_cert_chain(*identity_files(identity))
    lines = [f"GET {path} HTTP/1.1", f"Host: {service}", "Connection: close"]
    lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
    with socket.create_connection(address, timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=f"{service}.{env['TRUST_DOMAIN']}") as tls:
            tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            response = http_client.HTTPResponse(tls)
            response.begin()
            return Reply(response.status, response.headers, response.read())


def plaintext_get(address, service, path="/health"):
    """Plain HTTP to `address`, as bytes read until the server closes (b"" when it resets)."""
    data = b""
    try:
        with socket.create_connection(address, timeout=10) as raw:
            raw.sendall(f"GET {path} HTTP/1.1\r\nHost: {service}\r\nConnection: close\r\n\r\n".encode())
            while chunk := raw.recv(65536):
                data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    return data


def free_port(ip):
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------
# ECB reference data, read independently of the services


def load_ecb():
    """{date: {currency: Decimal per EUR}} from the zip the services ship."""
    with zipfile.ZipFile(ECB_ZIP) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".csv"))
        text = archive.read(name).decode("utf-8")
    rates = {}
    reader = csv.reader(io.StringIO(text))
    header = [column.strip() for column in next(reader)]
    for row in reader:
        if not row or not row[0].strip():
            continue
        day = dt.date.fromisoformat(row[0].strip())
        values = {"EUR": Decimal(1)}
        for currency, value in zip(header[1:], row[1:]):
            value = value.strip()
            if currency and value and value != "N/A":
                values[currency] = Decimal(value)
        rates[day] = values
    return rates


def business_day(rates, day):
    """The latest business day on or before `day` (the weekend and holiday rule)."""
    while day not in rates:
        day -= dt.timedelta(days=1)
    return day


def expected_conversion(amount, from_rate, to_rate, target):
    """amount × to_per_eur / from_per_eur, half-up to the target's minor units."""
    with decimal.localcontext() as context:
        context.prec = 60
        exact = amount * to_rate / from_rate
        quantum = Decimal(1).scaleb(-MINOR_UNITS.get(target, 2))
        return exact.quantize(quantum, rounding=decimal.ROUND_HALF_UP)


def rate_matches(shown, exact):
    """The shown cross rate is the exact one, to 1e-6 relative or to its last digit."""
    if abs(shown - exact) <= exact * Decimal("1e-6"):
        return True
    last_digit = Decimal(1).scaleb(shown.as_tuple().exponent)
    return abs(shown - exact) <= last_digit


def random_cases(rates, count, seed):
    """`count` (date, from, to, amount, business day) cases; dates may fall on weekends."""
    rng = random.Random(seed)
    first, last = min(rates), max(rates)
    cases = []
    while len(cases) < count:
        day = first + dt.timedelta(days=rng.randint(0, (last - first).days))
        effective = business_day(rates, day)
        currencies = sorted(rates[effective])
        source, target = rng.sample(currencies, 2)
        amount = Decimal(rng.randint(1, 10_000_000)) / 100
        cases.append((day, source, target, amount, effective))
    return cases


# --------------------------------------------------------------------------------------
# Prometheus text format


LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_sum(text, name, **labels):
    """Sum of the samples of `name` whose labels contain each given value (substring)."""
    total = 0.0
    for line in text.splitlines():
        match = LINE.match(line)
        if not match or match.group(1) != name:
            continue
        found = dict(LABEL.findall(match.group(2) or ""))
        if all(want in found.get(key, "") for key, want in labels.items()):
            total += float(match.group(3))
    return total


def metrics(service):
    reply = get(f"{ADMIN[service]}/admin/metrics/prometheus")
    if reply.status != 200:
        raise AssertionError(f"{service} sidecar metrics: {reply!r}")
    return reply.text


# --------------------------------------------------------------------------------------
# The tests (numbered: unittest runs them in name order, cheapest first)


class MeshTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rates = load_ecb()

    def assert_converts(self, date, source, target, amount, effective):
        where = f"{amount} {source}→{target} on {date}"
        reply = convert(date.isoformat(), source, target, str(amount))
        self.assertEqual(reply.status, 200, f"{where}: {reply!r}")
        body = reply.json()
        for key in ("converted", "effective_date", "from", "to", "amount", "rate"):
            self.assertIn(key, body, f"{where}: the reply has no {key!r}: {body}")
        from_rate, to_rate = self.rates[effective][source], self.rates[effective][target]
        want = expected_conversion(amount, from_rate, to_rate, target)
        self.assertEqual(Decimal(body["converted"]), want, f"{where}: converted; reply {body}")
        self.assertEqual(body["effective_date"], effective.isoformat(), f"{where}: effective date; reply {body}")
        self.assertEqual((body["from"], body["to"]), (source, target), f"{where}: currencies; reply {body}")
        self.assertEqual(Decimal(body["amount"]), amount, f"{where}: amount echoed; reply {body}")
        self.assertTrue(rate_matches(Decimal(body["rate"]), to_rate / from_rate),
                        f"{where}: rate {body['rate']} vs ECB {to_rate / from_rate}")
        return body

    def test_01_sidecars_answer_ping_and_ready(self):
        for service, admin in ADMIN.items():
            ping = get(f"{admin}/admin/ping")
            self.assertEqual(ping.status, 200, f"{service} sidecar /admin/ping: {ping!r}")
            self.assertEqual(ping.text.strip(), "pong", f"{service} sidecar /admin/ping body")
            ready = get(f"{admin}/admin/ready")
            self.assertEqual(ready.status, 200, f"{service} sidecar /admin/ready: {ready!r}")

    def test_02_random_conversions_match_the_ecb_data(self):
        for case in random_cases(self.rates, 30, SEED):
            with self.subTest(case=case[:4]):
                self.assert_converts(*case)

    def test_03_known_weekend_conversion(self):
        # 2016-09-04 is a Sunday: the rate of Friday 2016-09-02 applies; JPY has no minor unit.
        sunday = dt.date(2016, 9, 4)
        body = self.assert_converts(sunday, "USD", "JPY", Decimal(100), business_day(self.rates, sunday))
        self.assertNotIn(".", body["converted"], f"JPY has no decimals: {body}")

    def test_04_html_form_shows_the_result(self):
        day, source, target, amount = dt.date(2016, 9, 5), "USD", "JPY", Decimal("100")
        effective = business_day(self.rates, day)
        want = expected_conversion(amount, self.rates[effective][source], self.rates[effective][target], target)
        query = urllib.parse.urlencode({"date": day.isoformat(), "from": source, "to": target, "amount": amount})
        page = get(f"{PUBLIC}/?{query}")
        self.assertEqual(page.status, 200, f"form page: {page!r}")
        self.assertIn("<form", page.text.lower(), "the page has a form")
        grouped = f"{want:,}"
        spellings = {str(want), grouped} | {grouped.replace(",", sep) for sep in (" ", "\u00a0", "\u202f", "&nbsp;", "&#8239;", "&#160;")}
        self.assertTrue(any(s in page.text for s in spellings), f"form page shows none of {sorted(spellings)}")

    def test_05_metrics_count_ingress_and_egress_traffic(self):
        self.assertEqual(convert("2016-09-05", "USD", "GBP", "10").status, 200, "warm-up conversion")
        # Each hop of web → converter → rate appears on both sides of the call.
        expectations = [
            ("forex-web", "ingress", "forex-web"),
            ("forex-web", "egress", "forex-converter"),
            ("forex-converter", "ingress", "forex-converter"),
            ("forex-converter", "egress", "forex-rate"),
            ("forex-rate", "ingress", "forex-rate"),
        ]
        for sidecar, router, service in expectations:
            text = metrics(sidecar)
            requests = metric_sum(text, "switchyard_route_requests_total", router=router, service=service)
            self.assertGreater(requests, 0, f"{sidecar} sidecar: no {router} requests for {service}")
            ok = metric_sum(text, "switchyard_route_responses_total", router=router, service=service, status_code="200")
            self.assertGreater(ok, 0, f"{sidecar} sidecar: no {router} 200 responses for {service}")
            latency = metric_sum(text, "switchyard_route_response_latency_seconds_bucket", router=router, service=service)
            self.assertGreater(latency, 0, f"{sidecar} sidecar: no {router} latency samples for {service}")
            self.assertIn("switchyard_dtab_generation", text, f"{sidecar} sidecar exports the dtab generation")

    def test_06_dtab_reroute_and_restore(self):
        admin = f"{ADMIN['forex-converter']}/dtab/egress"
        original = get(admin)
        self.assertEqual(original.status, 200, f"GET dtab: {original!r}")
        original_etag = original.headers.get("ETag")
        self.assertTrue(original_etag, "GET /dtab/egress carries an ETag")
        # Whatever happens below, put the original routing back for the tests after us.
        self.addCleanup(http, "PUT", admin, body=original.text, headers=meshlib.admin_auth())

        dead = f"/svc=>/#/io.l5d.fs;/svc/forex-rate=>{DEAD_RATE};"
        put = http("PUT", admin, body=dead, headers=meshlib.admin_auth({"If-Match": original_etag}))
        self.assertEqual(put.status, 204, f"PUT dead-end dtab: {put!r}")
        dead_etag = put.headers.get("ETag")
        self.assertTrue(dead_etag and dead_etag != original_etag, "a new dtab gets a new ETag")
        # The egress dtab is mesh-wide (mesh.sh gives every egress router one shared store):
        # the PUT on forex-converter's sidecar reroutes every sidecar's egress router.
        for sidecar in ("forex-web", "forex-rate"):
            eventually(lambda: get(f"{ADMIN[sidecar]}/dtab/egress").headers.get("ETag") == dead_etag,
                       f"{sidecar}'s egress router follows the mesh-wide dtab")

        failed = convert("2016-09-05", "USD", "JPY", "100")
        self.assertGreaterEqual(failed.status, 500, f"conversion with forex-rate unreachable: {failed!r}")
        try:
            error = failed.json().get("error", "")
        except ValueError:
            self.fail(f"the failure is not JSON: {failed!r}")
        # The browser-facing answer says what failed, never where: no service name, address or l5d-err text
        # (those are in the converter's log and its sidecar's metrics, below).
        self.assertEqual(error, "conversion is not available right now", f"a generic error: {failed!r}")
        self.assertNotIn("127.", failed.text, f"no internal address reaches the client: {failed!r}")
        bad_gateway = metric_sum(metrics("forex-converter"), "switchyard_route_responses_total",
                                 router="egress", service="forex-rate", status_code="502")
        self.assertGreater(bad_gateway, 0, "converter sidecar counts egress 502s for forex-rate")

        restored = http("PUT", admin, body=original.text, headers=meshlib.admin_auth({"If-Match": dead_etag}))
        self.assertEqual(restored.status, 204, f"PUT the original dtab back: {restored!r}")
        eventually(lambda: convert("2016-09-05", "USD", "JPY", "100").status == 200,
                   "conversions work again after restoring the dtab")
        self.assertEqual(get(admin).text, original.text, "the dtab reads back as the original")
        eventually(lambda: get(f"{ADMIN['forex-web']}/dtab/egress").text == original.text,
                   "the restored dtab is mesh-wide too")

        self.check_malformed_dtab_is_refused(admin)
        self.check_stale_etag_is_refused(admin, stale=dead_etag)

    def check_malformed_dtab_is_refused(self, admin):
        before = get(admin)
        reply = http("PUT", admin, body="/svc=>/#/io.l5d.fs;\n/svc/forex-rate=>;;",
                     headers=meshlib.admin_auth({"If-Match": before.headers.get("ETag")}))
        self.assertEqual(reply.status, 400, f"malformed dtab: {reply!r}")
        problem = reply.json()
        self.assertIn("error", problem, f"400 body names the error: {problem}")
        self.assertIsInstance(problem.get("line"), int, f"400 body has a line: {problem}")
        self.assertIsInstance(problem.get("column"), int, f"400 body has a column: {problem}")
        self.assertEqual(problem["line"], 2, f"the error is on line 2: {problem}")
        after = get(admin)
        self.assertEqual(after.text, before.text, "a malformed dtab leaves the old one in force")
        self.assertEqual(after.headers.get("ETag"), before.headers.get("ETag"), "and its ETag")

    def check_stale_etag_is_refused(self, admin, stale):
        before = get(admin)
        reply = http("PUT", admin, body="/svc=>/#/io.l5d.fs;", headers=meshlib.admin_auth({"If-Match": stale}))
        self.assertEqual(reply.status, 412, f"PUT with a stale If-Match: {reply!r}")
        self.assertEqual(get(admin).text, before.text, "a refused PUT changes nothing")

    def test_07_unknown_router_is_404(self):
        reply = get(f"{ADMIN['forex-converter']}/dtab/no-such-router")
        self.assertEqual(reply.status, 404, f"GET /dtab/no-such-router: {reply!r}")

    def test_08_delegator_explains_down_to_the_fs_namer(self):
        query = urllib.parse.urlencode({"router": "egress", "path": "/svc/forex-rate"})
        reply = get(f"{ADMIN['forex-converter']}/delegator.json?{query}")
        self.assertEqual(reply.status, 200, f"delegator: {reply!r}")
        explained = json.dumps(reply.json())
        self.assertIn("/svc/forex-rate", explained, f"the delegation starts at the asked path: {explained[:500]}")
        self.assertIn("/#/io.l5d.fs/forex-rate", explained, f"delegation reaches the fs namer: {explained[:500]}")

    def test_09_proxy_errors_carry_l5d_err(self):
        # A name nobody registered: the egress router cannot bind it.
        egress = f"http://{MESH_NET}.2.1:4141/"
        reply = get(egress, headers={"Host": "no-such-service"})
        self.assertGreaterEqual(reply.status, 400, f"unroutable request: {reply!r}")
        self.assertTrue(reply.headers.get("l5d-err"), f"proxy error has an l5d-err header: {dict(reply.headers)}")

    def test_10_admin_writes_need_the_token(self):
        admin = f"{ADMIN['forex-converter']}/dtab/egress"
        before = get(admin)
        self.assertEqual(before.status, 200, f"reads need no token: {before!r}")
        etag = before.headers.get("ETag")
        changed = "/svc=>/#/io.l5d.fs;/svc/forex-rate=>/$/fail;"
        for what, headers in (("no token", {}), ("a wrong token", {"Authorization": "Bearer not-the-token"})):
            reply = http("PUT", admin, body=changed, headers={**headers, "If-Match": etag})
            self.assertEqual(reply.status, 401, f"PUT with {what}: {reply!r}")
            self.assertIn("error", reply.json(), f"401 body says why: {reply!r}")
        after = get(admin)
        self.assertEqual((after.text, after.headers.get("ETag")), (before.text, etag), "a 401 changes nothing")
        # With the token: the same dtab written back is a real write (204, new version).
        reply = http("PUT", admin, body=before.text, headers=meshlib.admin_auth({"If-Match": etag}))
        self.assertEqual(reply.status, 204, f"PUT with the token: {reply!r}")
        self.assertEqual(get(admin).text, before.text)
        # The admin server answers only to its own names (DNS rebinding): 421 for any other Host.
        reply = get(admin, headers={"Host": "rebind.example"})
        self.assertEqual(reply.status, 421, f"foreign Host: {reply!r}")

    def test_11_plaintext_to_an_ingress_is_refused(self):
        # Refused with a 400 that says why; never forex-rate's own answer.
        data = plaintext_get(RATE_INGRESS, "forex-rate")
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), f"forex-rate's ingress answered plain HTTP: {data[:200]!r}")
        self.assertIn(b"l5d-err: this port requires mutual TLS", data)

    def test_12_tls_without_a_client_certificate_fails(self):
        # TLS 1.3: the client may finish its side before the server refuses, so the failure can come with
        # the first read; either way there is no answer.
        with self.assertRaises((ssl.SSLError, ConnectionError), msg="a client without a certificate got in"):
            reply = tls_get(RATE_INGRESS, "forex-rate")
            self.fail(f"answered without a client certificate: {reply!r}")

    def test_13_only_the_expected_caller_is_authorized(self):
        reply = tls_get(RATE_INGRESS, "forex-rate", identity="forex-web")
        self.assertEqual(reply.status, 403, f"forex-web's identity calling forex-rate directly: {reply!r}")
        self.assertIn(spiffe_id("forex-web"), reply.headers.get("l5d-err", ""), f"l5d-err names the caller: {reply!r}")
        reply = tls_get(RATE_INGRESS, "forex-rate", identity="forex-converter")
        self.assertEqual(reply.status, 200, f"forex-converter's identity (forex-rate's caller): {reply!r}")
        # HAProxy's identity is admitted by forex-web's ingress, and by nothing else.
        self.assertEqual(tls_get(WEB_INGRESS, "forex-web", identity="edge").status, 200, "edge → forex-web")
        self.assertEqual(tls_get(RATE_INGRESS, "forex-rate", identity="edge").status, 403, "edge → forex-rate")
        # The allowed caller's routing context is trusted (clearContext: false): its l5d-dtab is honoured.
        reply = tls_get(RATE_INGRESS, "forex-rate", identity="forex-converter",
                        headers={"l5d-dtab": "/svc/forex-rate => /$/fail"})
        self.assertEqual(reply.status, 502, f"l5d-dtab from the allowed caller is honoured: {reply!r}")

    def test_14_refusals_are_counted(self):
        # After tests 11 to 13 (unittest runs them in name order); run alone, make the attempts here.
        plaintext_get(RATE_INGRESS, "forex-rate")
        try:
            tls_get(RATE_INGRESS, "forex-rate")
        except (ssl.SSLError, ConnectionError):
            pass
        tls_get(RATE_INGRESS, "forex-rate", identity="forex-web")

        def counted():
            text = metrics("forex-rate")
            return (metric_sum(text, "switchyard_tls_handshake_errors_total", router="ingress") >= 2
                    and metric_sum(text, "switchyard_authorization_denied_total", router="ingress",
                                   caller=spiffe_id("forex-web")) >= 1 and text)

        text = eventually(counted, "forex-rate's sidecar counts handshake errors and authorization denials")
        self.assertGreater(metric_sum(text, "switchyard_tls_handshake_errors_total", reason="no_client_certificate"), 0)

    def test_15_context_is_trusted_by_identity(self):
        """A private sidecar (forex-rate's identity, in front of forex-rate's app) that admits forex-converter
        and forex-web but honours the routing context of forex-converter only (allowContext)."""
        ip = f"{MESH_NET}.9.1"
        port, admin_port = free_port(ip), free_port(ip)
        env = meshlib.mesh_env()
        cert, key = identity_files("forex-rate")
        config = f"""admin: {{ip: {ip}, port: {admin_port}}}
routers:
- protocol: http
  label: ingress
  dtab: |
    /svc/* => /$/inet/{MESH_NET}.3.1/8080;
  servers:
  - ip: {ip}
    port: {port}
    clearContext: false
    tls: {{certPath: {cert}, keyPath: {key}, caCertPath: {env['CA_CERT']}, requireClientAuth: true}}
    authorization:
      allow: [{spiffe_id('forex-converter')}, {spiffe_id('forex-web')}]
      allowContext: [{spiffe_id('forex-converter')}]
"""
        with tempfile.TemporaryDirectory(prefix="e2e-context-") as folder:
            path = Path(folder) / "sidecar.yaml"
            path.write_text(config)
            with open(Path(folder) / "switchyard.log", "w") as log:
                process = subprocess.Popen([str(SWITCHYARD), "run", str(path)], stdout=log, stderr=subprocess.STDOUT)
            try:
                def ready():
                    if process.poll() is not None:
                        self.fail(f"the private sidecar exited: {(Path(folder) / 'switchyard.log').read_text()}")
                    try:
                        return get(f"http://{ip}:{admin_port}/admin/ready", timeout=2).status == 200
                    except OSError:
                        return False

                eventually(ready, "the private sidecar is ready")
                override = {"l5d-dtab": "/svc/forex-rate => /$/fail"}
                honoured = tls_get((ip, port), "forex-rate", identity="forex-converter", headers=override)
                self.assertEqual(honoured.status, 502, f"l5d-dtab from an identity in allowContext: {honoured!r}")
                dropped = tls_get((ip, port), "forex-rate", identity="forex-web", headers=override)
                self.assertEqual(dropped.status, 200, f"l5d-dtab from an identity not in allowContext: {dropped!r}")
            finally:
                process.terminate()
                process.wait(timeout=15)


if __name__ == "__main__":
    unittest.main()
