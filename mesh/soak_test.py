#!/usr/bin/env python3
"""Soak test over the real local mesh (run by mesh/soak.sh): a bounded long run of steady conversions through
HAProxy while the mesh is disturbed on a schedule, watching every sidecar for leaks. Python stdlib only.

- Load: SOAK_RATE conversions per second (default 100), open-loop: request i is due at start + i/rate whatever
  happened to earlier ones, and its latency counts from that due time (a stall shows up as latency, not as a
  lower rate). SOAK_CLIENTS threads (default 16) with keep-alive connections to HAProxy take the due requests.
  Every answer is checked: status 200 and a positive `converted` amount in the JSON. (switchyard-bench has a
  fixed rate and a duration, but it checks only for a 2xx status and sends one fixed URL, so it is not used.)
- Events, each on its own clock: every SOAK_DTAB_SECS (60) the mesh-wide egress dtab is swapped between its
  original form and an equivalent one through an alias prefix (PUT with If-Match and the admin token on
  forex-converter's sidecar, checked first with the delegator to bind the same names, then followed on every
  sidecar); every SOAK_RESTART_SECS (90) one forex-rate instance, in turn, is restarted gracefully
  (`mesh/mesh.sh restart`: deregister, drain, stop app and sidecar, start both, register); every
  SOAK_ABUSE_SECS (30) forex-converter's sidecar (the one every conversion crosses twice) gets 50 idle
  connections on each of its ingress and egress listeners, held 5 s, and a few garbage requests, then all are
  closed. (mesh/abuse_test.py, when present, is another suite with its own sidecar: never run from here.)
- Sampling every SOAK_SAMPLE_SECS (10): VmRSS and the number of open file descriptors of every sidecar and app,
  from /proc, per instance and per process (a restarted instance is a new process: slopes are computed over
  each process's own lifetime, pooled per instance). Samples taken while an abuse round holds its connections
  are marked and count only for the maxima.
- Verdict: no failed conversion, every event done as intended, every sidecar still running, and per sidecar:
  the RSS slope at most SOAK_RSS_SLOPE_KIB (64) KiB/min when the run lasts 10 minutes or more, and no process
  whose FD count ends more than SOAK_FD_GROWTH (20) above its start. In runs of 5 minutes or more the first
  2 minutes of each process (from the run's start for those already running) are warm-up, not used.

Writes target/soak/report.md (also printed), target/soak/samples.csv (every sample) and
target/soak/events.csv (every event); mesh/mesh.sh's output for the restarts goes to target/soak/events.log.
Exit status 1 when any check fails.
"""

import csv
import http.client
import json
import os
import queue
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from decimal import Decimal, InvalidOperation
from pathlib import Path

import meshlib


def env_number(name, default, kind=float, minimum=0):
    raw = os.environ.get(name, "")
    try:
        value = kind(raw) if raw.strip() else default
    except ValueError:
        sys.exit(f"soak_test.py: {name} must be a number (got {raw!r})")
    if value <= minimum:
        sys.exit(f"soak_test.py: {name} must be greater than {minimum} (got {raw!r})")
    return value


NET = os.environ.get("MESH_NET", "127.79")
RUN_DIR = meshlib.run_dir()
MINUTES = env_number("SOAK_MINUTES", 20.0)
RATE = env_number("SOAK_RATE", 100, int)
CLIENTS = env_number("SOAK_CLIENTS", 16, int)
DTAB_SECS = env_number("SOAK_DTAB_SECS", 60.0)
RESTART_SECS = env_number("SOAK_RESTART_SECS", 90.0)
ABUSE_SECS = env_number("SOAK_ABUSE_SECS", 30.0)
SAMPLE_SECS = env_number("SOAK_SAMPLE_SECS", 10.0)
RSS_SLOPE_KIB = env_number("SOAK_RSS_SLOPE_KIB", 64.0)
FD_GROWTH = env_number("SOAK_FD_GROWTH", 20, int)
WARMUP_SECS = 120.0
WARMUP_FROM_MIN = 5.0  # warm-up is skipped only in runs at least this long
SLOPE_VERDICT_MIN = 10.0  # the RSS slope is judged only in runs at least this long
REQUEST_TIMEOUT = 10.0

OUT = meshlib.REPO_ROOT / "target" / "soak"
REPORT, SAMPLES_CSV, EVENTS_CSV, EVENTS_LOG = (OUT / n for n in ("report.md", "samples.csv", "events.csv", "events.log"))
PUBLIC = (f"{NET}.0.1", 8080)
SERVICES = ("forex-web", "forex-converter", "forex-rate")
OCTET = {"forex-web": 1, "forex-converter": 2, "forex-rate": 3}
PAIRS = [("USD", "JPY"), ("EUR", "GBP"), ("GBP", "CHF"), ("JPY", "USD"), ("CHF", "SEK"), ("AUD", "NZD")]
AMOUNTS = ["100", "1234.56", "7", "250000"]
FIRST_DAY = 915408000  # 1999-01-04, the first day of the ECB's reference rates
DAYS = 26 * 365

# The dtab swap: forex-converter's sidecar takes the write (the egress dtab is mesh-wide), and the alias form
# sends /svc through one more prefix to the same namer, so every name binds exactly as before.
DTAB_ADMIN = f"http://{NET}.2.1:9990"
ALIAS_DTAB = "/soak-alias => /#/io.l5d.fs;\n/svc => /soak-alias;\n"
ABUSE_SIDECAR = "forex-converter-1"
ABUSE_IP = f"{NET}.2.1"
ABUSE_LISTENERS = {"ingress": 4140, "egress": 4141}
IDLE_CONNECTIONS = 50
IDLE_HOLD_SECS = 5.0
GARBAGE = [
    b"GARBAGE\r\n\r\n",
    b"\x00\x01\x02\x03\xff\xfe\xfd\r\n\r\n",
    b"GET / HTTP/1.1 and then some\r\nHost: forex-rate\r\n\r\n",
    b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\nHost: forex-rate\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: forex-rate\r\nContent-Length: nope\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)),  # a ClientHello cut short: 512 bytes announced
]

T0 = time.monotonic()
T0_WALL = time.time()
# Set while an abuse round holds its connections: samples taken then are marked, and left out of the figures
# (the extra descriptors and buffers are the round's own, not a leak), except for the maxima.
ABUSING = threading.Event()


def now():
    """Seconds since the run started."""
    return time.monotonic() - T0


def clock(t):
    return f"{int(t // 60):3d}:{int(t % 60):02d}"


def say(message):
    print(f"[{clock(now())}] {message}", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# The mesh's instances and processes


def instances():
    """(name, service, ip) of every instance in the run folder, in service order."""
    found = []
    for service in SERVICES:
        for folder in sorted(RUN_DIR.glob(f"{service}-*"), key=lambda p: int(p.name.rsplit("-", 1)[1])):
            if (folder / "sidecar.yaml").is_file():
                index = folder.name.rsplit("-", 1)[1]
                found.append((folder.name, service, f"{NET}.{OCTET[service]}.{index}"))
    return found


def process_of(pidfile, program):
    """(pid, start time in clock ticks) of the process the pid file names, if it still runs `program`."""
    try:
        pid = int(pidfile.read_text().strip())
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2]
        if not any(os.path.basename(w.decode(errors="replace")) == program for w in words):
            return None
        stat = Path(f"/proc/{pid}/stat").read_text()
        return pid, int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def measure(pid):
    """(VmRSS in KiB, open file descriptors) of a process, or None when it is gone."""
    try:
        rss = None
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
                break
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return (rss, fds) if rss is not None else None
    except (OSError, ValueError):
        return None


class Sampler:
    """Every sidecar's and app's RSS and FDs, every SAMPLE_SECS."""

    def __init__(self):
        self.samples = []  # dicts: t, instance, program, pid, start, rss_kib, fds, abuse (1 during a round)
        self.lock = threading.Lock()

    def sample(self):
        t = now()
        abusing = ABUSING.is_set()
        rows = []
        for name, service, _ip in instances():
            for program in ("switchyard", service):
                process = process_of(RUN_DIR / name / f"{program}.pid", program)
                figures = measure(process[0]) if process else None
                if figures:
                    rows.append({"t": t, "instance": name, "program": program, "pid": process[0],
                                 "start": process[1], "rss_kib": figures[0], "fds": figures[1]})
        if abusing or ABUSING.is_set():
            for row in rows:
                row["abuse"] = 1
        with self.lock:
            self.samples.extend(rows)
        return rows

    def run(self, first, until, stop):
        due = first
        while not stop.wait(max(0.0, due - now())):
            if now() >= until:
                return
            self.sample()
            due += SAMPLE_SECS


# ---------------------------------------------------------------------------------------------------------------
# The load: open-loop conversions through HAProxy


def conversion_path(rng):
    date = time.strftime("%Y-%m-%d", time.gmtime(FIRST_DAY + rng.randrange(DAYS) * 86400))
    source, target = rng.choice(PAIRS)
    query = urllib.parse.urlencode({"date": date, "from": source, "to": target, "amount": rng.choice(AMOUNTS)})
    return f"/api/convert?{query}"


def check_answer(status, body):
    """None when the answer is a conversion, else what is wrong with it."""
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    try:
        converted = Decimal(str(json.loads(body)["converted"]))
    except (ValueError, KeyError, TypeError, InvalidOperation):
        return f"200 without a converted amount: {body[:200]!r}"
    return None if converted > 0 else f"converted amount {converted} is not positive: {body[:200]!r}"


class Load:
    """RATE conversions per second from T0 until `end` (seconds since T0), CLIENTS threads taking due times."""

    def __init__(self, end):
        self.end = end
        self.due = queue.Queue()
        self.lock = threading.Lock()
        self.latencies = []  # seconds from the due time to the answer, every request
        self.failures = []  # (t, error)
        self.sent = 0
        self.minute = []  # latencies since the last progress line
        self.threads = [threading.Thread(target=self.pace, daemon=True)]
        self.threads += [threading.Thread(target=self.work, args=(seed,), daemon=True) for seed in range(CLIENTS)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def join(self):
        for thread in self.threads:
            thread.join(timeout=REQUEST_TIMEOUT * 3)

    def pace(self):
        n = 0
        while True:
            due = n / RATE
            if due >= self.end:
                break
            delay = due - now()
            if delay > 0:
                time.sleep(delay)
            self.due.put(due)
            n += 1
        for _ in range(CLIENTS):
            self.due.put(None)

    def work(self, seed):
        rng = random.Random(seed)
        connection = None
        while (due := self.due.get()) is not None:
            path = conversion_path(rng)
            error = None
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(*PUBLIC, timeout=REQUEST_TIMEOUT)
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                error = check_answer(response.status, body)
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as e:
                error = f"{type(e).__name__}: {e}"
                if connection is not None:
                    connection.close()
                connection = None
            done = now()
            with self.lock:
                self.sent += 1
                self.latencies.append(done - due)
                self.minute.append(done - due)
                if error:
                    self.failures.append((done, f"{path}: {error}"))
        if connection is not None:
            connection.close()

    def progress(self):
        with self.lock:
            minute, self.minute = self.minute, []
            return self.sent, len(self.failures), minute


def percentile(values, q):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------------------------------------------------------
# Events


class Events:
    """What the scheduled disturbances did: one record per event, printed as it happens."""

    def __init__(self):
        self.records = []  # dicts: t, kind, ok, secs, detail
        self.lock = threading.Lock()
        self.abuse = Counter()  # outcomes of the abuse rounds, by listener and what happened

    def record(self, kind, started, ok, detail):
        secs = now() - started
        with self.lock:
            self.records.append({"t": started, "kind": kind, "ok": ok, "secs": secs, "detail": detail})
        print(f"[{clock(started)}] {kind}: {'ok' if ok else 'FAILED'} ({secs:.1f} s) {detail}", flush=True)

    def count(self, kind, ok=None):
        with self.lock:
            return sum(1 for r in self.records if r["kind"] == kind and (ok is None or r["ok"] == ok))


def every(interval, first, budget, until, stop, action):
    """Calls action() at first, first + interval, … as long as it can finish (budget seconds) before `until`."""
    due = first
    while due + budget <= until and not stop.wait(max(0.0, due - now())):
        try:
            action()
        except Exception as e:  # noqa: BLE001 — an event that crashed is recorded as failed, the soak goes on
            say(f"event crashed: {type(e).__name__}: {e}")
            EVENTS.record("crashed", now(), False, f"{action.__name__}: {type(e).__name__}: {e}")
        due += interval
        while due < now():  # an event overran its interval: skip the slots it missed
            due += interval


def bound_names(dtab, path):
    """The concrete names `path` binds to under `dtab`, as forex-converter's sidecar explains it."""
    query = urllib.parse.urlencode({"router": "egress", "path": path, "dtab": dtab})
    status, _, body = meshlib.request("GET", f"{DTAB_ADMIN}/delegator.json?{query}", timeout=5)
    if status != 200:
        raise AssertionError(f"delegator.json answered {status}: {body[:200]!r}")
    names = set()

    def walk(node):
        if node.get("type") == "leaf":
            names.add(node["bound"]["id"])
        for key in ("delegate",):
            if isinstance(node.get(key), dict):
                walk(node[key])
        for key in ("alt", "union"):
            for child in node.get(key) or []:
                walk(child.get("tree", child) if isinstance(child, dict) else child)

    walk(json.loads(body)["tree"])
    return names


class DtabSwapper:
    """Swaps the mesh-wide egress dtab between its original form and ALIAS_DTAB, and back."""

    def __init__(self):
        status, headers, body = meshlib.request("GET", f"{DTAB_ADMIN}/dtab/egress")
        if status != 200:
            raise SystemExit(f"soak_test.py: GET {DTAB_ADMIN}/dtab/egress answered {status}")
        self.original = body.decode()
        self.forms = {"original": self.original, "alias": ALIAS_DTAB}
        self.current = "original"
        # Both forms must bind every service to the same names before traffic is put on the alias.
        for service in SERVICES:
            path = f"/svc/{service}"
            a, b = bound_names(self.original, path), bound_names(ALIAS_DTAB, path)
            if not a or a != b:
                raise SystemExit(f"soak_test.py: the alias dtab is not equivalent for {path}: {a} vs {b}")
        say(f"dtab forms checked equivalent with the delegator: {self.original.strip()!r} and {ALIAS_DTAB.strip()!r}")

    def swap(self, to=None):
        started = now()
        to = to or ("alias" if self.current == "original" else "original")
        status, headers, body = meshlib.request("GET", f"{DTAB_ADMIN}/dtab/egress", timeout=5)
        etag = headers.get("ETag") if status == 200 else None
        if not etag:
            return EVENTS.record("dtab swap", started, False, f"GET /dtab/egress answered {status}")
        status, headers, body = meshlib.request("PUT", f"{DTAB_ADMIN}/dtab/egress", body=self.forms[to],
                                                headers=meshlib.admin_auth({"If-Match": etag}), timeout=5)
        if status != 204:
            return EVENTS.record("dtab swap", started, False, f"PUT the {to} form: {status} {body[:200]!r}")
        self.current = to
        new_etag = headers.get("ETag")
        # Every sidecar's egress router follows the store; one being restarted right now is skipped (it reads
        # the store when it starts).
        waiting = {name: ip for name, _service, ip in instances()}
        skipped, deadline = [], time.monotonic() + 15
        while waiting and time.monotonic() < deadline:
            for name, ip in list(waiting.items()):
                try:
                    s, h, _ = meshlib.request("GET", f"http://{ip}:9990/dtab/egress", timeout=2)
                except OSError:
                    s, h = None, {}
                if s == 200 and h.get("ETag") == new_etag:
                    del waiting[name]
                elif s is None and not (RUN_DIR / name / "switchyard.pid").exists():
                    skipped.append(name)
                    del waiting[name]
            if waiting:
                time.sleep(0.2)
        detail = f"to the {to} form, version {new_etag}; followed by every sidecar"
        if skipped:
            detail += f" (not {', '.join(skipped)}: restarting)"
        if waiting:
            detail = f"to the {to} form, version {new_etag}; NOT followed within 15 s by {', '.join(waiting)}"
        EVENTS.record("dtab swap", started, not waiting, detail)

    def restore(self):
        if self.current != "original":
            self.swap("original")


class Restarter:
    """Restarts the forex-rate instances gracefully, one at a time, in turn."""

    def __init__(self):
        self.names = [name for name, service, _ip in instances() if service == "forex-rate"]
        if len(self.names) < 2:
            raise SystemExit("soak_test.py: the soak needs at least 2 forex-rate instances (RATE_INSTANCES=3)")
        self.next = 0

    def restart(self):
        name = self.names[self.next % len(self.names)]
        self.next += 1
        started = now()
        with open(EVENTS_LOG, "a") as log:
            log.write(f"\n--- {clock(started)} mesh/mesh.sh restart {name}\n")
            log.flush()
            try:
                done = subprocess.run(["mesh/mesh.sh", "restart", name], cwd=meshlib.REPO_ROOT, stdout=log,
                                      stderr=subprocess.STDOUT, timeout=120)
                ok, detail = done.returncode == 0, f"{name} (mesh/mesh.sh exit {done.returncode})"
            except subprocess.TimeoutExpired:
                ok, detail = False, f"{name}: mesh/mesh.sh restart took over 120 s"
        EVENTS.record("restart", started, ok, detail)


def read_outcome(sock, wait):
    """What a listener did with a connection: an answer's first line, closed, reset, or nothing yet."""
    sock.settimeout(wait)
    try:
        data = sock.recv(4096)
    except socket.timeout:
        return "no answer"
    except ConnectionResetError:
        return "reset"
    except OSError as e:
        return f"error {type(e).__name__}"
    if not data:
        return "closed"
    line = data.split(b"\r\n", 1)[0]
    if line.startswith(b"HTTP/"):
        return line[:12].decode(errors="replace")  # "HTTP/1.1 400"
    if data[:1] == b"\x15":
        return "TLS alert"
    return "other bytes"


def abuse_round():
    """Idle connections and garbage requests on forex-converter's sidecar's ingress and egress listeners."""
    started = now()
    ABUSING.set()
    try:
        opened = abuse_connections()
    finally:
        ABUSING.clear()
    status, _, _ = meshlib.request("GET", f"http://{ABUSE_IP}:9990/admin/ready", timeout=5)
    EVENTS.record("abuse round", started, status == 200,
                  f"{opened} idle connections held {IDLE_HOLD_SECS:.0f} s, "
                  f"{len(GARBAGE) * len(ABUSE_LISTENERS)} garbage requests on {ABUSE_SIDECAR}; "
                  f"its /admin/ready answers {status}")


def abuse_connections():
    """One round's connections, all closed again; returns how many idle ones were opened."""
    opened = []
    for listener, port in ABUSE_LISTENERS.items():
        for _ in range(IDLE_CONNECTIONS):
            try:
                opened.append((listener, socket.create_connection((ABUSE_IP, port), timeout=2)))
            except OSError as e:
                EVENTS.abuse[(listener, f"idle: connect failed ({type(e).__name__})")] += 1
    time.sleep(IDLE_HOLD_SECS)
    for listener, sock in opened:
        outcome = read_outcome(sock, 0.01)
        EVENTS.abuse[(listener, "idle: still open after 5 s" if outcome == "no answer" else f"idle: {outcome}")] += 1
        sock.close()
    for listener, port in ABUSE_LISTENERS.items():
        for payload in GARBAGE:
            try:
                with socket.create_connection((ABUSE_IP, port), timeout=2) as sock:
                    try:
                        sock.sendall(payload)
                        outcome = read_outcome(sock, 2)
                    except (ConnectionResetError, BrokenPipeError):
                        outcome = "reset"
            except OSError as e:
                outcome = f"connect failed ({type(e).__name__})"
            EVENTS.abuse[(listener, f"garbage: {outcome}")] += 1
    return len(opened)


EVENTS = Events()


# ---------------------------------------------------------------------------------------------------------------
# Analysis


def lifetimes(samples):
    """The samples of one instance's sidecar grouped per process (pid and start time), in order."""
    groups = {}
    for s in samples:
        groups.setdefault((s["pid"], s["start"]), []).append(s)
    return sorted(groups.values(), key=lambda g: g[0]["t"])


def analysed(life, run_secs):
    """The samples of one process used for its figures: not those taken during an abuse round, nor the warm-up
    in long enough runs."""
    quiet = [s for s in life if not s.get("abuse")]
    if run_secs < WARMUP_FROM_MIN * 60:
        return quiet
    begin = max(life[0]["t"], WARMUP_SECS) if life[0]["t"] <= SAMPLE_SECS else life[0]["t"] + WARMUP_SECS
    return [s for s in quiet if s["t"] >= begin - 1e-6]


def pooled_slope(segments, key):
    """Least-squares slope per minute of `key`, each segment (process) with its own intercept."""
    sxy = sxx = 0.0
    for seg in segments:
        if len(seg) < 3:
            continue
        xs = [s["t"] / 60 for s in seg]
        ys = [s[key] for s in seg]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxy += sum((x - mx) * (y - my) for x, y in zip(xs, ys))
        sxx += sum((x - mx) ** 2 for x in xs)
    return sxy / sxx if sxx > 0 else None


def sidecar_figures(samples, run_secs, final_names):
    rows = []
    for name, _service, _ip in instances():
        own = [s for s in samples if s["instance"] == name and s["program"] == "switchyard"]
        lives = lifetimes(own)
        used = [seg for seg in (analysed(life, run_secs) for life in lives) if len(seg) >= 3]
        window = [s for seg in used for s in seg] or own
        row = {"instance": name, "processes": len(lives), "used": len(used), "lives": lives, "segments": used}
        if not window:
            row["verdict"] = ["FAIL: never sampled"]
            rows.append(row)
            continue
        row.update(
            rss_start=window[0]["rss_kib"], rss_end=window[-1]["rss_kib"], rss_max=max(s["rss_kib"] for s in own),
            fd_start=window[0]["fds"], fd_end=window[-1]["fds"], fd_max=max(s["fds"] for s in own),
            rss_slope=pooled_slope(used, "rss_kib"), fd_slope=pooled_slope(used, "fds"),
            fd_growth=max((seg[-1]["fds"] - seg[0]["fds"] for seg in used), default=None),
        )
        verdict = []
        if name not in final_names:
            verdict.append("FAIL: not running at the end")
        if run_secs >= SLOPE_VERDICT_MIN * 60 and row["rss_slope"] is not None and row["rss_slope"] > RSS_SLOPE_KIB:
            verdict.append(f"FAIL: RSS grows {row['rss_slope']:.1f} KiB/min (> {RSS_SLOPE_KIB:g})")
        if row["fd_growth"] is not None and row["fd_growth"] > FD_GROWTH:
            verdict.append(f"FAIL: FDs end {row['fd_growth']} above their start (> {FD_GROWTH})")
        row["verdict"] = verdict
        rows.append(row)
    return rows


def fmt(value, spec="d", none="n/a"):
    return none if value is None else format(value, spec)


# ---------------------------------------------------------------------------------------------------------------


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    EVENTS_LOG.write_text("")
    run_secs = MINUTES * 60
    names = [name for name, _s, _ip in instances()]
    if not names:
        sys.exit(f"soak_test.py: no mesh instances in {RUN_DIR} (run it through mesh/soak.sh)")
    swapper, restarter = DtabSwapper(), Restarter()
    global T0, T0_WALL
    T0, T0_WALL = time.monotonic(), time.time()
    say(f"soak: {MINUTES:g} min, {RATE} conversions/s open-loop through http://{PUBLIC[0]}:{PUBLIC[1]} "
        f"({CLIENTS} clients); dtab swap every {DTAB_SECS:g} s, forex-rate restart every {RESTART_SECS:g} s, "
        f"abuse of {ABUSE_SIDECAR}'s sidecar every {ABUSE_SECS:g} s; samples every {SAMPLE_SECS:g} s of "
        f"{len(names)} instances")
    if (meshlib.REPO_ROOT / "mesh" / "abuse_test.py").exists():
        say("mesh/abuse_test.py exists but is a suite of its own (its own sidecar): not run here; "
            "the built-in abuse rounds run instead")

    load = Load(run_secs)
    sampler = Sampler()
    stop_events, stop_sampler = threading.Event(), threading.Event()
    events_end = max(0.0, run_secs - 12)
    threads = [
        threading.Thread(target=sampler.run, args=(min(5.0, run_secs / 4), events_end, stop_sampler), daemon=True),
        # Out of step, so that events rarely coincide (with the defaults: swaps on the minute, restarts 10 s
        # after a half minute, abuse 15 s after one) and a failure can be put down to one of them.
        threading.Thread(target=every, args=(DTAB_SECS, DTAB_SECS, 15, events_end, stop_events, swapper.swap),
                         daemon=True),
        threading.Thread(target=every, args=(RESTART_SECS, RESTART_SECS + 10, 40, events_end, stop_events,
                                             restarter.restart), daemon=True),
        threading.Thread(target=every, args=(ABUSE_SECS, ABUSE_SECS / 2, IDLE_HOLD_SECS + 25, events_end,
                                             stop_events, abuse_round), daemon=True),
    ]
    load.start()
    for thread in threads:
        thread.start()

    next_progress = 60.0
    while now() < events_end:
        time.sleep(min(1.0, max(0.0, events_end - now())))
        if now() >= next_progress:
            sent, failed, minute = load.progress()
            say(f"{sent} conversions, {failed} failed; last minute p50 {percentile(minute, 0.5) * 1000:.1f} ms, "
                f"p99 {percentile(minute, 0.99) * 1000:.1f} ms; dtab swaps {EVENTS.count('dtab swap')}, "
                f"restarts {EVENTS.count('restart')}, abuse rounds {EVENTS.count('abuse round')}")
            next_progress += 60
    stop_events.set()
    stop_sampler.set()
    for thread in threads:
        thread.join(timeout=150)
    try:
        swapper.restore()  # the run ends on the dtab it started with
    except Exception as e:  # noqa: BLE001
        EVENTS.record("dtab swap", now(), False, f"restoring the original form: {type(e).__name__}: {e}")
    # The last sample under load, after every event has settled.
    final = sampler.sample()
    final_names = {s["instance"] for s in final if s["program"] == "switchyard"}
    load.join()
    elapsed = now()
    ok = write_report(load, sampler.samples, run_secs, elapsed, final_names)
    sys.exit(0 if ok else 1)


def write_report(load, samples, run_secs, elapsed, final_names):
    with open(SAMPLES_CSV, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "utc", "instance", "program", "pid", "rss_kib", "fds", "during_abuse"])
        for s in samples:
            utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0_WALL + s["t"]))
            w.writerow([f"{s['t']:.1f}", utc, s["instance"], s["program"], s["pid"], s["rss_kib"], s["fds"],
                        s.get("abuse", 0)])
    with open(EVENTS_CSV, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "kind", "ok", "secs", "detail"])
        for r in EVENTS.records:
            w.writerow([f"{r['t']:.1f}", r["kind"], int(r["ok"]), f"{r['secs']:.1f}", r["detail"]])

    lat = load.latencies
    ms = lambda q: percentile(lat, q) * 1000  # noqa: E731
    rows = sidecar_figures(samples, run_secs, final_names)
    checks = []

    def check(cond, what):
        checks.append(("ok  " if cond else "FAIL") + " " + what)
        return cond

    failed = len(load.failures)
    good = check(failed == 0, f"failed conversions: {failed} of {load.sent}")
    good &= check(load.sent >= 0.95 * RATE * run_secs,
                  f"requests sent: {load.sent} of the {int(RATE * run_secs)} scheduled")
    for kind in ("dtab swap", "restart", "abuse round", "crashed"):
        bad = EVENTS.count(kind, ok=False)
        if kind != "crashed" or bad:
            good &= check(bad == 0, f"{kind}s that went wrong: {bad} of {EVENTS.count(kind)}")
    for row in rows:
        good &= check(not row["verdict"], f"sidecar {row['instance']}: " + ("; ".join(row["verdict"]) or "no leak seen"))

    warm = run_secs >= WARMUP_FROM_MIN * 60
    judged = run_secs >= SLOPE_VERDICT_MIN * 60
    abuse = sorted(EVENTS.abuse.items())
    lines = [
        f"# Soak test over the local mesh — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(T0_WALL))}",
        "",
        f"**{'PASS' if good else 'FAIL'}** — {MINUTES:g} min planned, {elapsed / 60:.1f} min run; "
        f"private mesh MESH_NET={NET}, 3 forex-rate instances.",
        "",
        "## Load",
        "",
        f"- {RATE} conversions/s open-loop through HAProxy (`http://{PUBLIC[0]}:{PUBLIC[1]}/api/convert`, random dates "
        f"and currency pairs), {CLIENTS} keep-alive clients; every answer checked for status 200 and a converted amount",
        f"- requests sent: **{load.sent}**; failed conversions: **{failed}**",
        f"- latency from the intended send time: p50 **{ms(0.5):.1f} ms**, p90 {ms(0.9):.1f} ms, "
        f"p99 **{ms(0.99):.1f} ms**, p99.9 {ms(0.999):.1f} ms, max {max(lat, default=float('nan')) * 1000:.1f} ms",
    ]
    if load.failures:
        lines += ["", "First failures (t since start, request, what came back):", ""]
        lines += [f"- {clock(t).strip()} {err}" for t, err in load.failures[:10]]
    lines += [
        "",
        "## Events",
        "",
        f"- dtab swaps (every {DTAB_SECS:g} s, original ⇄ `{ALIAS_DTAB.strip().replace(chr(10), ' ')}`, followed by "
        "every sidecar): "
        f"**{EVENTS.count('dtab swap', True)}** done, {EVENTS.count('dtab swap', False)} failed",
        f"- graceful restarts of a forex-rate instance (every {RESTART_SECS:g} s, in turn): "
        f"**{EVENTS.count('restart', True)}** done, {EVENTS.count('restart', False)} failed",
        f"- abuse rounds on {ABUSE_SIDECAR}'s sidecar (every {ABUSE_SECS:g} s: {IDLE_CONNECTIONS} idle connections "
        f"per listener held {IDLE_HOLD_SECS:g} s, {len(GARBAGE)} garbage requests per listener): "
        f"**{EVENTS.count('abuse round', True)}** done, {EVENTS.count('abuse round', False)} failed",
    ]
    if abuse:
        lines += ["", "| listener | what happened | times |", "|---|---|---:|"]
        lines += [f"| {listener} ({ABUSE_IP}:{ABUSE_LISTENERS[listener]}) | {what} | {n} |"
                  for (listener, what), n in abuse]
    lines += [
        "",
        "## Sidecars",
        "",
        f"RSS (VmRSS) and open FDs sampled every {SAMPLE_SECS:g} s; "
        + "samples taken during an abuse round count only for the maxima; "
        + ("the first 2 minutes of each process are warm-up, not used for start/end/slope; " if warm
           else "run under 5 min: no warm-up left out; ")
        + "slopes are least squares per minute over each process's own lifetime (pooled per instance when it was "
        "restarted); FD growth is the most any one process ended above its start; max is over every sample. "
        + (f"Verdict: RSS slope ≤ {RSS_SLOPE_KIB:g} KiB/min and FD growth ≤ {FD_GROWTH}." if judged
           else f"Run under {SLOPE_VERDICT_MIN:g} min: the RSS slope is shown, not judged; FD growth ≤ {FD_GROWTH} "
                "is judged."),
        "",
        "| sidecar | processes (used) | RSS start KiB | RSS end KiB | RSS max KiB | RSS slope KiB/min | FDs start | "
        "FDs end | FDs max | FD slope /min | FD growth | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "rss_start" not in r:
            lines.append(f"| {r['instance']} | 0 | | | | | | | | | | {'; '.join(r['verdict'])} |")
            continue
        lines.append(
            f"| {r['instance']} | {r['processes']} ({r['used']}) | {r['rss_start']} | {r['rss_end']} | {r['rss_max']} | "
            f"{fmt(r['rss_slope'], '+.1f')} | {r['fd_start']} | {r['fd_end']} | {r['fd_max']} | "
            f"{fmt(r['fd_slope'], '+.2f')} | {fmt(r['fd_growth'], '+d')} | "
            f"{'**' + '; '.join(r['verdict']) + '**' if r['verdict'] else 'ok'} |")
    restarted = [r for r in rows if r.get("processes", 0) > 1]
    if restarted:
        lines += ["", "Restarted sidecars, process by process:", "",
                  "| sidecar | pid | sampled from–to | samples (used) | RSS first→last KiB | RSS slope KiB/min | "
                  "FDs first→last |",
                  "|---|---:|---|---:|---:|---:|---:|"]
        for r in restarted:
            for life in r["lives"]:
                seg = analysed(life, run_secs)
                used = len(seg) if len(seg) >= 3 else 0
                quiet = [s for s in life if not s.get("abuse")] or life
                lines.append(
                    f"| {r['instance']} | {life[0]['pid']} | {clock(life[0]['t']).strip()}–{clock(life[-1]['t']).strip()} | "
                    f"{len(life)} ({used}) | {quiet[0]['rss_kib']}→{quiet[-1]['rss_kib']} | "
                    f"{fmt(pooled_slope([seg], 'rss_kib') if used else None, '+.1f')} | "
                    f"{quiet[0]['fds']}→{quiet[-1]['fds']} |")
    lines += ["", "## Checks", "", "```", *checks, "```", "",
              f"Raw samples: {SAMPLES_CSV.relative_to(meshlib.REPO_ROOT)}; events: "
              f"{EVENTS_CSV.relative_to(meshlib.REPO_ROOT)} (restart output in "
              f"{EVENTS_LOG.relative_to(meshlib.REPO_ROOT)})."]
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines), flush=True)
    bad = [c for c in checks if c.startswith("FAIL")]
    if bad:
        print("\n" + "!" * 100 + "\n" + "\n".join(f"!!! {c}" for c in bad) + "\n" + "!" * 100, flush=True)
    return good


if __name__ == "__main__":
    main()
