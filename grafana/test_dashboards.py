#!/usr/bin/env python3
"""Every Grafana panel's query, run against the real Prometheus that scrapes the real mesh.

Grafana cannot run here, so this test does what Grafana would: it parses every dashboard in
grafana/dashboards/, resolves each template variable the way Grafana does (`label_values(...)` through
Prometheus' label API; "All" as the variable's allValue), substitutes `$__interval` and `$__rate_interval`
from the scrape interval Prometheus really uses, and runs every target's expression as a range query over
the time the test put load on the mesh. Each must parse for every value of the dashboard's variable, and
return data (a series with at least one number) for the value the dashboard opens with (forex-converter,
which both serves and calls; forex-rate calls nobody, so its "outgoing" panels are rightly empty).

A few panels show families the sidecars do not export in every setup (PENDING below, each with its reason):
while such a family has no series at all in Prometheus, its panel is reported, not failed; the moment the
family exists, its panel must return data like every other.

Run: `python3 grafana/test_dashboards.py -v` against a mesh started by `mesh/mesh.sh up` (mesh/e2e.sh does
this on its private mesh). Python 3 standard library only. Environment: MESH_NET (default 127.0),
PROMETHEUS_URL (default http://$MESH_NET.0.1:9090), DASHBOARD_LOAD (conversions to send first, default 60).
"""

import datetime as dt
import json
import math
import os
import re
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
PROMETHEUS = os.environ.get("PROMETHEUS_URL", f"http://{MESH_NET}.0.1:9090")
LOAD = int(os.environ.get("DASHBOARD_LOAD", "60"))
HERE = Path(__file__).resolve().parent
DASHBOARDS = sorted((HERE / "dashboards").glob("*.json"))
PROVISIONED_DATASOURCE_UID = "prometheus"
# How long to wait for scrapes and rule evaluations to catch up (not a performance bound).
EVENTUALLY_SECS = 60

# Families a panel may show that these sidecars do not always export, and why. Allowed to be absent only
# while Prometheus has no series of the family at all.
PENDING = {
    "switchyard_namer_staleness_seconds": "exported by the Consul namer only; the local mesh discovers through io.l5d.fs",
    "switchyard_endpoint_available": "failure accrual's endpoint state (issue 4), absent from sidecars built without it",
    "switchyard_endpoint_latency_ewma_seconds": "peak-EWMA per endpoint (issue 4), absent from sidecars built without it",
    "switchyard_endpoint_requests_in_flight": "in-flight per endpoint (issue 4), absent from sidecars built without it",
}


# --------------------------------------------------------------------------------------------------------
# Prometheus


def prometheus(path, **params):
    """GET a Prometheus API path; returns `data`, or raises with Prometheus' own error text."""
    url = f"{PROMETHEUS}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        body = json.load(error)
    if body.get("status") != "success":
        raise AssertionError(f"{body.get('errorType')}: {body.get('error')}")
    return body["data"]


def scrape_interval_seconds():
    """The global scrape interval of the running Prometheus (what Grafana's datasource would be set to)."""
    config = prometheus("/api/v1/status/config")["yaml"]
    match = re.search(r"^\s+scrape_interval:\s*(\d+)s\s*$", config, re.MULTILINE)
    if not match:
        raise AssertionError(f"no scrape_interval in seconds in Prometheus' config:\n{config[:500]}")
    return int(match.group(1))


def eventually(check, what):
    return meshlib.eventually(check, what, EVENTUALLY_SECS, 0.5)


def unix_time(stamp):
    """An RFC 3339 time as Prometheus writes it (nanoseconds, `Z` or an offset) → Unix seconds."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", stamp or "")
    if not match:
        return 0.0
    whole, fraction, zone = match.groups()
    moment = dt.datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + float(f"0.{fraction or 0}")


def all_scraped_after(moment):
    """Every active target is up and was last scraped after `moment` (a Unix time)."""
    targets = prometheus("/api/v1/targets", state="active")["activeTargets"]
    return bool(targets) and all(t["health"] == "up" and unix_time(t["lastScrape"]) > moment for t in targets)


def rules_evaluated_after(moment):
    """Every rule group was evaluated after `moment`."""
    groups = prometheus("/api/v1/rules")["groups"]
    return bool(groups) and all(unix_time(g.get("lastEvaluation")) > moment for g in groups)


def present_families():
    return set(prometheus("/api/v1/label/__name__/values"))


def has_number(result):
    """A range query's result holds a series with at least one finite sample."""
    for series in result:
        for _, value in series.get("values", []):
            if math.isfinite(float(value)):
                return True
    return False


# --------------------------------------------------------------------------------------------------------
# Grafana's side


def load(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def panels_of(dashboard):
    """Every panel with queries, rows' nested panels included, in order."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panels_of({"panels": panel.get("panels", [])})
        else:
            yield panel


LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.+?)\s*,\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$")


def variable_values(variable, window):
    """The values a query variable offers, as Grafana resolves `label_values(selector, label)`."""
    query = variable.get("query")
    text = query.get("query") if isinstance(query, dict) else query
    match = LABEL_VALUES.match(text or "")
    if not match:
        raise AssertionError(f"variable {variable['name']}: unsupported query {text!r} (only label_values)")
    selector, label = match.groups()
    params = {"start": window[0], "end": window[1]}
    if selector:
        params["match[]"] = selector
    return sorted(prometheus(f"/api/v1/label/{label}/values", **params))


def current_value(variable):
    value = variable.get("current", {}).get("value")
    if isinstance(value, list):
        value = value[0] if value else None
    return value


def substitute(expr, variables, interval, rate_interval):
    """Grafana's substitution: built-ins first, then `${name}`, `$name` and `[[name]]`."""
    text = expr.replace("$__rate_interval", rate_interval).replace("${__rate_interval}", rate_interval)
    text = text.replace("$__interval", interval).replace("${__interval}", interval)
    for name, value in sorted(variables.items(), key=lambda item: -len(item[0])):
        text = text.replace("${" + name + "}", value).replace("[[" + name + "]]", value)
        text = re.sub(r"\$" + re.escape(name) + r"\b", lambda _m, v=value: v, text)
    leftover = re.search(r"\$\{?[A-Za-z_]\w*", text)
    if leftover:
        raise AssertionError(f"unsubstituted variable {leftover.group(0)!r} in {text!r}")
    return text


def combinations(dashboard, window):
    """[(values, is_default)] for the dashboard's variables: every value of its (single) variable."""
    variables = dashboard.get("templating", {}).get("list", [])
    if not variables:
        return [({}, True)]
    if len(variables) > 1:
        raise AssertionError(f"{dashboard['uid']}: this test handles one template variable")
    variable = variables[0]
    name, default = variable["name"], current_value(variable)
    options = [(value, value == default) for value in variable_values(variable, window)]
    if variable.get("includeAll"):
        options.append((variable.get("allValue") or ".*", default == "$__all"))
    if not any(is_default for _, is_default in options):
        raise AssertionError(f"{dashboard['uid']}: default {name}={default!r} is not among {options}")
    return [({name: value}, is_default) for value, is_default in options]


# --------------------------------------------------------------------------------------------------------
# The tests


def convert(index):
    query = urllib.parse.urlencode({"date": f"2016-09-{index % 28 + 1:02d}", "from": "USD", "to": "JPY", "amount": index + 1})
    with urllib.request.urlopen(f"{PUBLIC}/api/convert?{query}", timeout=10) as response:
        return response.status


class DashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.interval = scrape_interval_seconds()
        cls.started = time.time() - 2 * cls.interval
        statuses = [convert(i) for i in range(LOAD)]
        cls.load_ok = statuses.count(200)
        loaded = time.time()
        # Two scrapes of every target after the load, then a rule evaluation after those.
        eventually(lambda: all_scraped_after(loaded), "every target scraped after the load")
        second = time.time()
        eventually(lambda: all_scraped_after(second), "every target scraped twice after the load")
        evaluated = time.time()
        eventually(lambda: rules_evaluated_after(evaluated), "the rules evaluated after the scrapes")
        cls.window = (cls.started, time.time())
        cls.families = present_families()

    def test_01_the_load_went_through(self):
        self.assertEqual(self.load_ok, LOAD, "every conversion of the load answered 200")

    def test_02_dashboards_are_current_grafana_models(self):
        self.assertGreaterEqual(len(DASHBOARDS), 3, "mesh overview, per service, sidecar internals")
        uids = set()
        for path in DASHBOARDS:
            with self.subTest(dashboard=path.name):
                dashboard = load(path)
                self.assertGreaterEqual(dashboard.get("schemaVersion", 0), 39, "a current Grafana JSON model")
                self.assertNotIn(dashboard.get("uid"), uids, "dashboard uids are unique")
                uids.add(dashboard.get("uid"))
                rows = [p for p in dashboard.get("panels", []) if p.get("type") == "row"]
                ids = [p.get("id") for p in rows] + [p.get("id") for p in panels_of(dashboard)]
                self.assertEqual(len(ids), len(set(ids)), f"panel ids are unique: {ids}")
                panels = list(panels_of(dashboard))
                self.assertTrue(panels, "the dashboard has panels")
                for panel in panels:
                    where = f"{path.name}: panel {panel.get('title')!r}"
                    self.assertIn("gridPos", panel, where)
                    self.assertTrue(panel.get("targets"), f"{where} has queries")
                    for target in panel["targets"]:
                        source = target.get("datasource") or panel.get("datasource") or {}
                        self.assertEqual(source.get("uid"), PROVISIONED_DATASOURCE_UID, f"{where}: the provisioned datasource")
                        self.assertTrue(target.get("expr", "").strip(), f"{where}: target {target.get('refId')} has an expression")

    def test_03_provisioning_names_the_dashboards_and_datasource(self):
        datasource = (HERE / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
        self.assertRegex(datasource, rf"uid:\s*{PROVISIONED_DATASOURCE_UID}\b")
        self.assertRegex(datasource, r"type:\s*prometheus\b")
        provider = (HERE / "provisioning" / "dashboards" / "switchyard.yml").read_text(encoding="utf-8")
        self.assertRegex(provider, r"path:\s*/var/lib/grafana/dashboards\b")

    def test_04_every_panel_query_returns_data(self):
        interval = f"{self.interval}s"
        # Grafana: max($__interval + scrape interval, 4 × scrape interval), $__interval no finer than the scrape.
        rate_interval = f"{max(2 * self.interval, 4 * self.interval)}s"
        start, end = self.window
        failures, pending, checked = [], [], 0
        for path in DASHBOARDS:
            dashboard = load(path)
            for panel in panels_of(dashboard):
                outcome = self.run_panel(dashboard, panel, start, end, interval, rate_interval)
                checked += 1
                failures.extend(outcome["failures"])
                pending.extend(outcome["pending"])
        for line in pending:
            print(f"\n  pending (reported, not failed): {line}", end="")
        print(f"\n  {checked} panels checked, {len(pending)} pending, {len(failures)} failing")
        self.assertFalse(failures, "panels whose queries fail or return nothing:\n  " + "\n  ".join(failures))

    def run_panel(self, dashboard, panel, start, end, interval, rate_interval):
        where = f"{dashboard['uid']} / {panel.get('title')}"
        outcome = {"failures": [], "pending": []}
        empty_by_default = []
        for variables, is_default in combinations(dashboard, self.window):
            for target in panel["targets"]:
                expr = substitute(target["expr"], variables, interval, rate_interval)
                try:
                    result = prometheus("/api/v1/query_range", query=expr, start=start, end=end, step=interval)["result"]
                except AssertionError as error:
                    outcome["failures"].append(f"{where} [{target['refId']}] {variables}: {error}\n    {expr}")
                    continue
                if is_default and not has_number(result):
                    empty_by_default.append((target, expr))
        for target, expr in empty_by_default:
            missing = sorted(f for f in PENDING if f in target["expr"] and f not in self.families)
            if missing:
                outcome["pending"].append(f"{where} [{target['refId']}]: no series of {', '.join(missing)} yet ({PENDING[missing[0]]})")
            else:
                outcome["failures"].append(f"{where} [{target['refId']}]: no data\n    {expr}")
        return outcome


if __name__ == "__main__":
    unittest.main()
