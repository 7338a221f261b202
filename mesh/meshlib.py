"""Helpers shared by the Python tests that run against a live mesh (mesh/e2e_test.py, mesh/browser_test.py,
prometheus/test_live.py, grafana/test_dashboards.py). Standard library only."""

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_dir():
    """The mesh's run folder: $RUN_DIR (relative to the repository root, as mesh/mesh.sh reads it), default run."""
    path = Path(os.environ.get("RUN_DIR", "run"))
    return path if path.is_absolute() else REPO_ROOT / path


def mesh_env():
    """The KEY=VALUE lines of the run folder's mesh.env (written by `mesh/mesh.sh up`) as a dict."""
    env = {}
    for line in (run_dir() / "mesh.env").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            env[key.strip()] = value.strip()
    return env


def admin_token():
    """The token admin writes need (`make up` keeps it in <run folder>/admin-token)."""
    path = mesh_env().get("ADMIN_TOKEN_FILE") or run_dir() / "admin-token"
    return Path(path).read_text().strip()


def admin_auth(headers=None):
    """`headers` (a dict, copied) plus the admin token as `Authorization: Bearer`."""
    return {**(headers or {}), "Authorization": f"Bearer {admin_token()}"}


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
