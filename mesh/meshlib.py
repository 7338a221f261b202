"""Helpers shared by the Python tests that run against a live mesh (mesh/e2e_test.py, mesh/browser_test.py,
prometheus/test_live.py, grafana/test_dashboards.py). Standard library only."""

import time
import urllib.error
import urllib.request


def request(method, url, body=None, headers=None, timeout=10):
    """One HTTP request; returns (status, headers, body bytes) whatever the status (HTTP errors are not raised)."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def eventually(check, what, secs, interval=0.2):
    """Calls `check` until it returns a truthy value (returned) or `secs` pass (AssertionError naming `what`).
    The deadline only bounds how long a broken mesh makes the test hang; it is not a performance assertion."""
    deadline = time.monotonic() + secs
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: still not true after {secs}s (last: {last!r})")
