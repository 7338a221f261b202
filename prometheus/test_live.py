#!/usr/bin/env python3
"""Prometheus on a running mesh: every sidecar and app scraped, every exposition clean, every rule working.

Checks against the Prometheus that `mesh/mesh.sh up` starts: it scrapes a sidecar and an app per instance
and all are up, with the labels the dashboards rely on; `promtool check metrics` accepts what each of those
targets serves (a real scrape of its URL); the recording rules have a series for every service (incoming)
and every edge (outgoing); no rule fails to evaluate.

Run: `python3 prometheus/test_live.py -v` (mesh/e2e.sh runs it on its private mesh). Python 3 standard
library and promtool. Environment: MESH_NET (default 127.0), PROMETHEUS_URL (default http://$MESH_NET.0.1:9090).
"""

import json
import os
import subprocess
import time
import unittest
import urllib.parse
import urllib.request
from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mesh"))
import meshlib  # noqa: E402 — shared helpers for live-mesh tests

MESH_NET = os.environ.get("MESH_NET", "127.0")
PROMETHEUS = os.environ.get("PROMETHEUS_URL", f"http://{MESH_NET}.0.1:9090")
PUBLIC = f"http://{MESH_NET}.0.1:8080"
SERVICES = {"forex-web", "forex-converter", "forex-rate"}
EDGES = {("forex-web", "forex-converter"), ("forex-converter", "forex-rate")}
EVENTUALLY_SECS = 60


def api(path, **params):
    with urllib.request.urlopen(f"{PROMETHEUS}{path}?{urllib.parse.urlencode(params)}", timeout=15) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise AssertionError(f"{path}: {body}")
    return body["data"]


def query(expr):
    return api("/api/v1/query", query=expr)["result"]


def eventually(check, what):
    return meshlib.eventually(check, what, EVENTUALLY_SECS, 0.5)


class PrometheusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # A few conversions so every hop has fresh traffic in the rules' one-minute window.
        for amount in range(1, 11):
            url = f"{PUBLIC}/api/convert?date=2016-09-05&from=USD&to=JPY&amount={amount}"
            with urllib.request.urlopen(url, timeout=10) as response:
                response.read()

    def targets(self):
        return api("/api/v1/targets", state="active")["activeTargets"]

    def test_01_every_sidecar_and_app_is_scraped_and_up(self):
        def all_up():
            targets = self.targets()
            return targets if targets and all(t["health"] == "up" for t in targets) else None

        targets = eventually(all_up, "every target up")
        for job in ("switchyard", "forex"):
            services = {t["labels"].get("service") for t in targets if t["labels"].get("job") == job}
            self.assertEqual(services, SERVICES, f"job {job} scrapes every service")
        for target in targets:
            labels = target["labels"]
            self.assertRegex(labels.get("instance", ""), rf"^{labels.get('service')}-\d+$", f"clean instance label: {labels}")

    def test_02_every_exposition_passes_promtool_check_metrics(self):
        targets = self.targets()
        self.assertGreaterEqual(len(targets), 2 * len(SERVICES))
        for target in targets:
            url = target["scrapeUrl"]
            with self.subTest(target=url):
                with urllib.request.urlopen(url, timeout=10) as response:
                    exposition = response.read()
                self.assertIn(b"# TYPE", exposition, f"{url} serves a Prometheus exposition")
                check = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=30)
                problems = (check.stdout + check.stderr).decode(errors="replace")
                self.assertEqual(check.returncode, 0, f"promtool check metrics on {url}:\n{problems}")

    def test_03_sidecar_series_carry_direction_and_dst_service(self):
        series = query("sum by (service, direction, dst_service) (switchyard_route_requests_total)")
        seen = {(s["metric"].get("service"), s["metric"].get("direction"), s["metric"].get("dst_service")) for s in series}
        for service in SERVICES:
            self.assertIn((service, "inbound", service), seen, "ingress series relabelled")
        for caller, callee in EDGES:
            self.assertIn((caller, "outbound", callee), seen, "egress series relabelled")
        self.assertFalse(query("count({exported_service!=\"\"})"), "no exported_service label left over")

    def test_04_recording_rules_cover_every_service_and_edge(self):
        def services_of(rule):
            return {s["metric"].get("service") for s in query(rule)}

        for rule in ("service:switchyard_inbound_requests:rate1m", "service:switchyard_inbound_success:ratio_rate1m",
                     "service:switchyard_inbound_latency_seconds:p99_1m"):
            eventually(lambda rule=rule: services_of(rule) >= SERVICES, f"{rule} has every service")
        def edges_of(rule):
            return {(s["metric"].get("service"), s["metric"].get("dst_service")) for s in query(rule)}

        for rule in ("service_dst:switchyard_outbound_requests:rate1m", "service_dst:switchyard_outbound_latency_seconds:p50_1m"):
            eventually(lambda rule=rule: edges_of(rule) >= EDGES, f"{rule} has every edge")
        # Like the rules above, this one appears only once Prometheus has evaluated it over two scrapes.
        def routes():
            return {s["metric"].get("route") for s in query('service_route:forex_http_requests:rate1m{service="forex-rate"}')}

        eventually(lambda: "/{date}/{from}/{to}" in routes(), "the app's own metrics are labelled by matched route")

    def test_05_no_rule_fails_to_evaluate(self):
        groups = api("/api/v1/rules")["groups"]
        self.assertTrue(groups, "the rule files are loaded")
        for group in groups:
            for rule in group["rules"]:
                self.assertEqual(rule.get("health"), "ok", f"{group['name']}/{rule['name']}: {rule.get('lastError')}")


if __name__ == "__main__":
    unittest.main()
