#!/usr/bin/env python3
"""Browser check of a running forex mesh: headless Chromium, driven through chromedriver's
WebDriver API (plain HTTP + JSON, Python standard library only), looks at what a person
would see and saves screenshots under target/browser/.

Run: `python3 mesh/browser_test.py -v` against a mesh started by `mesh/mesh.sh up`
(mesh/e2e.sh runs it on the private e2e mesh after e2e_test.py).

Environment: MESH_NET (default 127.0) gives the addresses, as in mesh/mesh.sh;
CHROMIUM (default /usr/bin/chromium), CHROMEDRIVER (default /usr/bin/chromedriver);
BROWSER_OUT (default target/browser) for the screenshots.

What it checks: forex-converter's sidecar dashboard shows live traffic that changes as
requests flow; the dtab editor marks a malformed draft at its line and column, shows the
diff of a valid one, refuses an apply without the admin token with a clear 401 (the token,
typed into its field, is kept in sessionStorage), refuses a stale apply with a clear 412, and
an applied dtab moves traffic (conversions fail, the success rate drops) until it is restored; the delegator
page explains /svc/forex-rate down to the fs namer and its endpoint; the forex-web form
converts 100 USD to JPY on 2016-09-05 into 10,330 JPY.
"""

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mesh"))
import meshlib  # noqa: E402 — shared helpers for live-mesh tests

MESH_NET = os.environ.get("MESH_NET", "127.0")
PUBLIC = f"http://{MESH_NET}.0.1:8080"
CONVERTER_ADMIN = f"http://{MESH_NET}.2.1:9990"
RATE_INGRESS = f"{MESH_NET}.3.1:4140"
DEAD_RATE = f"/$/inet/{MESH_NET}.3.99/4140"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
REPO_ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("BROWSER_OUT", REPO_ROOT / "target" / "browser"))
# How long to wait for something that becomes true eventually (not a performance bound).
EVENTUALLY_SECS = 20
# The traffic generator's bounds: at most this many requests, and it stops with the test anyway.
TRAFFIC_MAX_REQUESTS = 2000


def http(method, url, body=None, headers=None, timeout=10):
    """One request; returns (status, headers, body text) whatever the status."""
    status, headers, body = meshlib.request(method, url, body, headers, timeout)
    return status, headers, body.decode("utf-8", "replace")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriver:
    """The few WebDriver commands this test needs, over chromedriver's HTTP API."""

    def __init__(self):
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="switchyard-chromium-")
        self.log = open(OUT / "chromedriver.log", "w")
        self.process = subprocess.Popen(
            [CHROMEDRIVER, f"--port={self.port}", "--allowed-ips=127.0.0.1"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        self._wait_ready()
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1440,1000", f"--user-data-dir={self.profile}"]
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _wait_ready(self):
        deadline = time.monotonic() + EVENTUALLY_SECS
        while time.monotonic() < deadline:
            try:
                status, _, body = http("GET", self.base + "/status", timeout=2)
                if status == 200 and json.loads(body)["value"].get("ready"):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise AssertionError("chromedriver did not become ready")

    def _call(self, method, path, payload=None):
        body = json.dumps(payload if payload is not None else {}) if method == "POST" else None
        status, _, text = http(method, self.base + path, body, {"content-type": "application/json"}, timeout=60)
        value = json.loads(text).get("value") if text else None
        if status != 200:
            raise AssertionError(f"WebDriver {method} {path}: HTTP {status}: {value}")
        return value

    def cmd(self, method, path, payload=None):
        return self._call(method, f"/session/{self.session}{path}", payload)

    def open(self, url):
        self.cmd("POST", "/url", {"url": url})

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        # An element reference is a one-key object (the key is WebDriver's fixed element identifier).
        ref = self.cmd("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(ref.values()))

    def click(self, css):
        self.cmd("POST", f"/element/{self.find(css)}/click")

    def type(self, css, text, clear=True):
        element = self.find(css)
        if clear:
            self.cmd("POST", f"/element/{element}/clear")
        self.cmd("POST", f"/element/{element}/value", {"text": text})

    def text(self, css):
        """The visible text of the first element matching `css`, or '' when there is none."""
        return self.js("const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", css)

    def screenshot(self, name):
        png = base64.b64decode(self.cmd("GET", "/screenshot"))
        (OUT / f"{name}.png").write_bytes(png)

    def quit(self):
        try:
            self.cmd("DELETE", "")
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)


def eventually(check, what):
    """Calls `check` until it returns a truthy value or EVENTUALLY_SECS pass."""
    return meshlib.eventually(check, what, EVENTUALLY_SECS, 0.2)


class Traffic:
    """Conversions through HAProxy in the background, so the dashboards have something to show."""

    def __init__(self):
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        query = urllib.parse.urlencode({"date": "2016-09-05", "from": "USD", "to": "JPY", "amount": "100"})
        while not self.stop.is_set() and self.sent < TRAFFIC_MAX_REQUESTS:
            try:
                http("GET", f"{PUBLIC}/api/convert?{query}", timeout=5)
            except OSError:
                pass
            self.sent += 1
            self.stop.wait(0.05)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=10)


def rate_row(kind="services", name="/svc/forex-rate"):
    return f'section.router[data-router="egress"] tr[data-kind="{kind}"][data-name="{name}"]'


def current_dtab():
    status, headers, body = http("GET", f"{CONVERTER_ADMIN}/dtab/egress")
    assert status == 200, (status, body)
    return body, headers["etag"]


class BrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        OUT.mkdir(parents=True, exist_ok=True)
        cls.original_dtab, _ = current_dtab()
        cls.traffic = Traffic()
        cls.browser = WebDriver()

    @classmethod
    def tearDownClass(cls):
        cls.traffic.close()
        cls.browser.quit()
        http("PUT", f"{CONVERTER_ADMIN}/dtab/egress", cls.original_dtab, meshlib.admin_auth())

    def setUp(self):
        self.b = self.browser

    def row_value(self, cell, kind="services", name="/svc/forex-rate"):
        return self.b.js(
            "const r = document.querySelector(arguments[0]); const c = r && r.querySelector(arguments[1]);"
            "return c ? c.getAttribute('data-value') : null;", rate_row(kind, name), "td." + cell)

    def test_01_dashboard_shows_live_traffic(self):
        b = self.b
        b.open(CONVERTER_ADMIN + "/")
        eventually(lambda: "live" in b.text("#live-text"), "the page says it is live")
        first = int(eventually(lambda: self.row_value("total"), "the /svc/forex-rate row appears"))
        eventually(lambda: float(self.row_value("rps") or 0) > 0, "requests per second above zero")
        later = eventually(lambda: (t := int(self.row_value("total") or 0)) > first and t,
                           "the request total grows while traffic flows")
        self.assertGreater(later, first)
        row = b.text(rate_row())
        self.assertIn("/svc/forex-rate", row)
        self.assertRegex(row, r"\d+(\.\d+)? ms", "latency percentiles shown")
        self.assertIn("100%", row, "every conversion succeeds before any dtab change")
        client = b.text(rate_row("clients", "/#/io.l5d.fs/forex-rate"))
        self.assertIn(RATE_INGRESS, client, "the bound client lists its endpoint")
        identity = b.text("section.identity")
        self.assertIn("spiffe://switchyard.local/svc/forex-converter", identity, "the sidecar's own identity")
        self.assertIn("spiffe://switchyard.local/svc/forex-web", identity, "the caller its ingress admits")
        self.assertIn("forex-rate.switchyard.local", identity, "the identity its egress requires of forex-rate")
        eventually(lambda: b.js("return document.querySelectorAll('svg.spark polyline').length") >= 2,
                   "sparklines drawn once there are two points")
        time.sleep(3)  # a few more points, so the screenshot shows a trend (not an assertion)
        b.screenshot("01-dashboard")

    def test_02_editor_marks_a_malformed_dtab(self):
        b = self.b
        b.open(CONVERTER_ADMIN + "/#dtab")
        eventually(lambda: b.text("#dtab-current").startswith("/svc"), "the current dtab is shown")
        b.type("#dtab-editor", "/svc => /#/io.l5d.fs;\n/svc/forex-rate =>> /x;")
        status = eventually(lambda: (t := b.text("#dtab-status")) and "line 2, column" in t and t,
                            "a position-precise error under the editor")
        self.assertIn("✗", status)
        self.assertEqual(b.text(".backdrop mark.err-char"), ">", "the offending character is marked")
        self.assertTrue(b.js("return document.querySelector('#dtab-apply').disabled"), "cannot apply a bad dtab")
        b.screenshot("02-dtab-error")

    def test_03_editor_diff_stale_apply_and_reroute(self):
        b = self.b
        b.open(CONVERTER_ADMIN + "/#dtab")
        eventually(lambda: b.text("#dtab-current").startswith("/svc"), "the current dtab is shown")
        draft = f"/svc => /#/io.l5d.fs;\n/svc/forex-rate => {DEAD_RATE};"
        b.type("#dtab-editor", draft)
        eventually(lambda: DEAD_RATE in b.text("#dtab-diff .add"), "the diff shows the added dentry")
        self.assertIn("/svc => /#/io.l5d.fs;", b.text("#dtab-diff .same"))
        self.assertIn("valid", b.text("#dtab-status"))
        b.screenshot("03-dtab-diff")

        # Without the admin token the apply is refused with a clear 401, and nothing changes.
        b.js("sessionStorage.clear(); document.querySelector('#dtab-token').value = '';")
        b.click("#dtab-apply")
        banner = eventually(lambda: "401" in (t := b.text("#dtab-banner")) and t, "a clear 401 banner")
        self.assertIn("not applied", banner.lower())
        self.assertIn("admin token", banner.lower())
        self.assertNotIn(DEAD_RATE, current_dtab()[0], "the apply without a token changed nothing")
        b.screenshot("04-dtab-401")
        # The user types the token (make up's run/admin-token); the page keeps it for this browser tab.
        token = meshlib.admin_token()
        b.type("#dtab-token", token)
        self.assertEqual(b.js("return sessionStorage.getItem('switchyard.adminToken')"), token)

        # Someone else changes the dtab meanwhile: applying the draft is refused with 412.
        _, etag = current_dtab()
        status, _, _ = http("PUT", f"{CONVERTER_ADMIN}/dtab/egress", "/svc => /#/io.l5d.fs; /svc/other => /$/fail;",
                            meshlib.admin_auth({"if-match": etag}))
        self.assertEqual(status, 204)
        b.click("#dtab-apply")
        banner = eventually(lambda: "412" in (t := b.text("#dtab-banner")) and t, "a clear 412 banner")
        self.assertIn("not applied", banner.lower())
        self.assertNotIn(DEAD_RATE, current_dtab()[0], "the stale apply changed nothing")
        b.screenshot("05-dtab-412")

        # Rebase on the new current dtab: the diff now also removes the other change; then apply.
        b.click("#dtab-banner button")
        eventually(lambda: "/svc/other" in b.text("#dtab-diff .remove"), "the diff against the new current dtab")
        b.click("#dtab-apply")
        eventually(lambda: "Applied" in b.text("#dtab-banner"), "the apply succeeds")
        self.assertIn(DEAD_RATE, current_dtab()[0])

        # Routing moved: conversions now fail, and the dashboard's success rate for forex-rate drops.
        status, _, body = http("GET", f"{PUBLIC}/api/convert?date=2016-09-05&from=USD&to=JPY&amount=100")
        self.assertGreaterEqual(status, 500, body)
        b.open(CONVERTER_ADMIN + "/")
        eventually(lambda: (v := self.row_value("sr")) and float(v) < 1.0, "the success rate falls below 100%")
        eventually(lambda: DEAD_RATE.split("/")[-2] in b.text(rate_row("clients", DEAD_RATE)),
                   "the dead address appears as a bound client")
        b.screenshot("06-dashboard-after-reroute")

        # The token survives a reload of the page (sessionStorage), so the next apply needs no typing.
        b.open(CONVERTER_ADMIN + "/#dtab")
        eventually(lambda: b.js("return document.querySelector('#dtab-token').value") == token,
                   "the token field is filled from sessionStorage after a reload")

        # Restore and see conversions work again.
        status, _, _ = http("PUT", f"{CONVERTER_ADMIN}/dtab/egress", self.original_dtab, meshlib.admin_auth())
        self.assertEqual(status, 204)
        eventually(lambda: http("GET", f"{PUBLIC}/api/convert?date=2016-09-05&from=USD&to=JPY&amount=100")[0] == 200,
                   "conversions work again after the restore")

    def test_04_delegator_explains_down_to_the_fs_namer(self):
        b = self.b
        b.open(CONVERTER_ADMIN + "/delegator?router=egress&path=/svc/forex-rate")
        summary = eventually(lambda: (t := b.text("#dlg-summary")) and "resolves" in t and t, "the outcome summary")
        self.assertIn("/#/io.l5d.fs/forex-rate", summary)
        tree = b.text("#dlg-tree")
        for want in ("/svc/forex-rate", "via dentry /svc => /#/io.l5d.fs", "/#/io.l5d.fs/forex-rate", RATE_INGRESS):
            self.assertIn(want, tree)
        types = b.js("return [...document.querySelectorAll('#dlg-tree .node')].map(n => n.dataset.type)")
        self.assertEqual(types[0], "delegate", types)
        self.assertIn("leaf", types)
        b.screenshot("07-delegator")

        # The same name under an edited draft, before applying it: a fallback alternative.
        b.open(CONVERTER_ADMIN + "/#dtab")
        eventually(lambda: b.text("#dtab-current").startswith("/svc"), "the current dtab is shown")
        b.type("#dtab-editor", "/svc => /#/io.l5d.fs;\n/svc/forex-rate => /#/io.l5d.fs/forex-rate-v2 | /#/io.l5d.fs/forex-rate;")
        eventually(lambda: "valid" in b.text("#dtab-status"), "the draft is valid")
        b.click("#dtab-try")
        eventually(lambda: "edited draft" in b.text("#dlg-summary"), "the draft is explained")
        tree_types = b.js("return [...document.querySelectorAll('#dlg-tree .node')].map(n => n.dataset.type)")
        self.assertIn("alt", tree_types)
        self.assertIn("neg", tree_types, "forex-rate-v2 is not registered")
        self.assertIn("used", b.text("#dlg-tree").lower(), "the alternative that binds is marked")
        b.screenshot("08-delegator-draft")

    def test_05_forex_web_form_converts(self):
        b = self.b
        b.open(PUBLIC + "/")
        b.js("document.querySelector('input[name=date]').value = arguments[0]", "2016-09-05")
        b.type("input[name=amount]", "100")
        b.click("select[name=from] option[value=USD]")
        b.click("select[name=to] option[value=JPY]")
        b.click("form button[type=submit]")
        result = eventually(lambda: b.text(".result"), "a result on the page")
        self.assertIn("10,330 JPY", result)
        b.screenshot("09-forex-web")


if __name__ == "__main__":
    unittest.main()
