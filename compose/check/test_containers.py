"""Static proof of the container deployment (compose/, rancher/, compose/images/).

There is no Docker engine on the machines this project is built on, so this proves
what can be proved without one, with the real tools wherever they run here:

* every Compose file passes `docker-compose config`, every rancher-compose.yml is
  consistent with its docker-compose.yml (services, sidekicks, health checks, LB rules);
* every file a Compose file mounts (or an image bakes in for Rancher) exists and passes
  its checker: `switchyard check`, `haproxy -c`, `promtool check config`, YAML/JSON;
* every Dockerfile's build context holds what it copies, and the images are built the
  way the files that run them expect (non-root, health check, exposed ports);
* the container sidecar configs differ from the local run's (mesh/sidecar.yaml.tmpl)
  only in addresses and in the namer, compared as parsed configs;
* zero trust: every sidecar's ingress is mutual TLS admitting only its one caller, every
  egress client presents the service's own identity, every admin API beyond loopback has a
  token; HAProxy verifies forex-web's certificate; no image copies a key or secret;
* the shipped HAProxy config, health probe, identity issuer and two-process entry point
  really run.

Configs that name certificates, keys or the admin token are checked as the containers
would see them: the identity issuers (Compose's `identity` service, Rancher's *-identity
sidekicks) run here, as their files say, with every container path (volumes, secrets)
mapped to a throwaway folder, and the configs are checked in copies whose container paths
are rewritten the same way. The throwaway CA, keys and token are deleted at exit.

Run by compose/check/run.sh (`make test-containers`), with Debian's python3, which
has PyYAML because docker-compose needs it. REPO_BIN names the directory holding the
release binaries (switchyard, forex-rate).
"""

import atexit
import copy
import fnmatch
import glob
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("REPO_BIN", os.path.join(REPO, "target", "release"))
SWITCHYARD = os.path.join(BIN, "switchyard")
STRICT = os.environ.get("CONTAINERS_STRICT") == "1"

SERVICES = ["forex-web", "forex-converter", "forex-rate"]
IMAGES_DIR = os.path.join(REPO, "compose", "images")
SIDECARS_DIR = os.path.join(REPO, "compose", "sidecars")
HAPROXY_CFG = os.path.join(REPO, "compose", "haproxy", "haproxy.cfg")
# The mesh's trust domain, and who may call whom: each ingress admits exactly one caller
# (edge: HAProxy in Compose, the forex-edge router on Rancher).
TRUST_DOMAIN = "switchyard.local"
CALLER = {"forex-rate": "forex-converter", "forex-converter": "forex-web", "forex-web": "edge"}
TOKEN_FILE = "/run/secrets/admin-token"
COMPOSE_FILE = os.path.join(REPO, "compose", "docker-compose.yml")
RANCHER_STACKS = ["consul-registrator", "forex", "metrics"]
COMPOSE_FILES = [COMPOSE_FILE] + [
    os.path.join(REPO, "rancher", stack, "docker-compose.yml") for stack in RANCHER_STACKS
]
# What the Compose files interpolate; any value proves the syntax.
COMPOSE_ENV = {"IMAGE_PREFIX": "registry.invalid/forex/", "TAG": "20250101000000-abcdef0"}
# The loopback network of this test's own processes (the e2e mesh uses 127.77, the
# browser test 127.78).
NET = "127.203"
# Hang guard for things that start, never a timing assertion.
DEADLINE_S = 20


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def run(args, env=None, **kw):
    """Runs a command, returning (exit status, stdout, stderr)."""
    full_env = dict(os.environ, **(env or {}))
    p = subprocess.run(args, capture_output=True, text=True, env=full_env, **kw)
    return p.returncode, p.stdout, p.stderr


def switchyard_check(path, as_json=False):
    args = [SWITCHYARD, "check"] + (["--json"] if as_json else []) + [path]
    return run(args)


_consul_support = None


def consul_namer_supported():
    """Whether this switchyard knows `io.l5d.consul` (issue 3); the container sidecar
    configs need it. Until it does, the checks that need it wait (skip), unless
    CONTAINERS_STRICT=1 makes them fail."""
    global _consul_support
    if _consul_support is None:
        status, _, err = switchyard_check(os.path.join(REPO, "compose", "sidecars", "forex-rate.yaml"))
        _consul_support = not (status != 0 and "io.l5d.consul" in err)
    return _consul_support


def require_consul(test):
    if not consul_namer_supported():
        msg = "waits for issue 3: this switchyard rejects `kind: io.l5d.consul`"
        if STRICT:
            test.fail(msg)
        test.skipTest(msg)


def compose_services(path):
    return load_yaml(path)["services"]


def spiffe(name):
    return f"spiffe://{TRUST_DOMAIN}/svc/{name}"


def interpolate(text):
    """Compose's ${VAR}, ${VAR:-default} and ${VAR-default}, from COMPOSE_ENV."""
    return re.sub(
        r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: COMPOSE_ENV.get(m.group(1), m.group(2) or ""), str(text)
    )


def localize(text, view):
    """text with every container path of view ({container path: host path}) replaced by its
    host path; longest first, whole path segments only, in one pass."""
    if not view:
        return text
    paths = sorted(view, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(re.escape(p) for p in paths) + r")(?=/|$|[^\w.-])")
    return pattern.sub(lambda m: view[m.group(1)], text)


def secret_refs(service):
    """(source, target) of a service's secrets, short or long syntax."""
    for entry in service.get("secrets") or []:
        if isinstance(entry, str):
            yield entry, entry
        else:
            yield entry["source"], entry.get("target", entry["source"])


class Deployment:
    """What the orchestrators would mount, made here with the real tools: the admin token, a
    throwaway CA for Rancher's CA secrets, and every identity the deployment's own issuers
    issue. view() gives a container's paths ({container path: host folder or file})."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="containers-identity-")
        atexit.register(shutil.rmtree, self.root, True)
        self.token = secrets.token_hex(16)
        token = self.write("secret-store/admin-token", self.token)
        # The Rancher operator's CA (README): made once, kept outside, handed in as secrets.
        rancher_ca = self.folder("rancher-ca")
        status, out, err = run([SWITCHYARD, "identity", "ca", "--trust-domain", TRUST_DOMAIN, "--out", rancher_ca])
        assert status == 0, out + err
        # By secret name: what the user (make compose-up) or the Rancher operator creates.
        self.secrets = {
            "admin-token": token,
            "switchyard-admin-token": token,
            "switchyard-ca-cert": os.path.join(rancher_ca, "ca.pem"),
            "switchyard-ca-key": os.path.join(rancher_ca, "ca.key"),
        }
        self.issued = {}

    def folder(self, relpath):
        path = os.path.join(self.root, relpath)
        os.makedirs(path, exist_ok=True)
        return path

    def write(self, relpath, text):
        path = os.path.join(self.root, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def view(self, compose_file, name):
        """{container path: host path} of service `name`: bind mounts, named volumes (one folder per
        volume, shared by every service of the file that mounts it), anonymous volumes (one folder
        per service), volumes_from, and /run/secrets (a folder of the service's secrets)."""
        base = os.path.dirname(compose_file)
        scope = os.path.relpath(compose_file, REPO).replace("/", "_")
        doc = load_yaml(compose_file)
        svc = doc["services"][name]
        view = {}
        for other in svc.get("volumes_from") or []:
            other_view = self.view(compose_file, other.split(":")[0])
            view.update({k: v for k, v in other_view.items() if k != "/run/secrets"})
        for volume in svc.get("volumes") or []:
            parts = volume.split(":")
            if len(parts) == 1:
                view[parts[0]] = self.folder(f"{scope}/anonymous/{name}{parts[0]}")
                continue
            source, target = parts[:2]
            if source.startswith((".", "/")):
                view[target] = os.path.normpath(os.path.join(base, source))
            else:
                view[target] = self.folder(f"{scope}/volumes/{source}")
        refs = list(secret_refs(svc))
        if refs:
            folder = self.folder(f"{scope}/secrets/{name}")
            for source, target in refs:
                declared = (doc.get("secrets") or {}).get(source)
                assert declared is not None, f"{name}: secret {source} is not declared"
                assert source in self.secrets, f"{name}: no throwaway value for secret {source}"
                shutil.copyfile(self.secrets[source], os.path.join(folder, target))
            view["/run/secrets"] = folder
        return view

    def issue(self, compose_file, name):
        """Runs issuer service `name` as its file says (entry point and command, with its container
        paths mapped by view()), once; (status, output)."""
        key = (compose_file, name)
        if key not in self.issued:
            svc = compose_services(compose_file)[name]
            view = self.view(compose_file, name)
            entrypoint = svc.get("entrypoint") or []
            entrypoint = [entrypoint] if isinstance(entrypoint, str) else entrypoint
            command = svc.get("command") or []
            command = command.split() if isinstance(command, str) else command
            args = [localize(interpolate(a), view) for a in entrypoint + command]
            env = {"PATH": f"{IMAGES_DIR}:{BIN}:{os.environ['PATH']}"}
            status, out, err = run(args, env=env)
            self.issued[key] = (status, out + err)
        return self.issued[key]

    def localized(self, path, view, name=None):
        """A copy of file `path` with its container paths mapped by view."""
        with open(path, encoding="utf-8") as f:
            text = localize(f.read(), view)
        serial = len(os.listdir(self.folder("localized")))
        return self.write(f"localized/{serial}-{name or os.path.basename(path)}", text)


_deployment = None


def deployment():
    global _deployment
    if _deployment is None:
        _deployment = Deployment()
    return _deployment


def issuers(compose_file):
    """Services whose entry point is the identity issuer."""
    return [
        name
        for name, svc in compose_services(compose_file).items()
        if (svc.get("entrypoint") or [None])[0] == "issue-identities"
    ]


def prepared_view(test, compose_file, name):
    """view() of service `name` after every issuer of the file has run (and succeeded)."""
    d = deployment()
    for issuer in issuers(compose_file):
        status, output = d.issue(compose_file, issuer)
        test.assertEqual(status, 0, f"{issuer}: {output}")
    return d.view(compose_file, name)


def env_of(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def images_list():
    """(name, dockerfile, {build arg: value}) from compose/images/images.sh list."""
    status, out, err = run([os.path.join(REPO, "compose", "images", "images.sh"), "list"])
    assert status == 0, err
    images = []
    for line in out.splitlines():
        name, dockerfile, *args = line.split()
        images.append((name, dockerfile, dict(a.split("=", 1) for a in args)))
    return images


# ---------------------------------------------------------------------------------
# Compose and Rancher files


class ComposeFiles(unittest.TestCase):
    def test_every_compose_file_passes_docker_compose_config(self):
        for path in COMPOSE_FILES:
            with self.subTest(path=os.path.relpath(path, REPO)):
                status, _, err = run(
                    ["docker-compose", "-f", path, "config", "-q"], env=COMPOSE_ENV, cwd=os.path.dirname(path)
                )
                self.assertEqual(status, 0, err)

    def test_scaled_services_have_no_fixed_names_or_host_ports(self):
        # `docker compose up --scale forex-rate=3` fails on a container_name or a fixed
        # host port; the forex services have neither (HAProxy and tools do, once).
        services = compose_services(COMPOSE_FILE)
        for name, svc in services.items():
            self.assertNotIn("container_name", svc, name)
        for name in SERVICES:
            self.assertNotIn("ports", services[name], f"{name} publishes host ports")

    def test_registrator_names_match_the_namer_and_prometheus(self):
        # The Consul namer looks up /<dc>/<service> (the ingress registration);
        # Prometheus keeps "<service>-admin" (sidecars) and "<service>-app" (apps).
        for path in [COMPOSE_FILE, os.path.join(REPO, "rancher", "forex", "docker-compose.yml")]:
            services = compose_services(path)
            for name in SERVICES:
                with self.subTest(path=os.path.relpath(path, REPO), service=name):
                    env = env_of(services[name])
                    self.assertEqual(env.get("SERVICE_4140_NAME"), name)
                    self.assertEqual(env.get("SERVICE_9990_NAME"), f"{name}-admin")
                    self.assertEqual(env.get("SERVICE_8080_NAME"), f"{name}-app")
                    self.assertIn("SERVICE_4141_IGNORE", env)
                    for port in ("9990", "8080"):
                        self.assertTrue(env.get(f"SERVICE_{port}_CHECK_HTTP", "").startswith("/"))
                    # The ingress speaks only mutual TLS and Consul has no mesh identity: a plain
                    # HTTP check there would always fail, and the namer routes to passing instances only.
                    self.assertNotIn("SERVICE_4140_CHECK_HTTP", env)
                    self.assertEqual(env.get("SERVICE_4140_CHECK_TCP"), "true")
        prometheus = os.path.join(REPO, "prometheus", "prometheus.yml")
        if os.path.exists(prometheus):
            jobs = {job["job_name"]: job for job in load_yaml(prometheus)["scrape_configs"]}
            keep = [
                rule["regex"]
                for job in jobs.values()
                for rule in job.get("relabel_configs", [])
                if rule.get("action") == "keep"
            ]
            for registered in ("forex-rate-admin", "forex-rate-app"):
                self.assertTrue(any(re.fullmatch(rx, registered) for rx in keep), registered)

    def test_compose_sidecar_mounts_match_their_service(self):
        services = compose_services(COMPOSE_FILE)
        for name in SERVICES:
            svc = services[name]
            self.assertEqual(env_of(svc).get("SWITCHYARD_CONFIG"), "/etc/switchyard/sidecar.yaml")
            self.assertIn(f"./sidecars/{name}.yaml:/etc/switchyard/sidecar.yaml:ro", svc["volumes"])
            self.assertTrue(svc["image"].endswith(f"{name}:${{TAG:-latest}}"), svc["image"])

    def test_compose_identities_are_issued_first_and_each_container_reads_only_its_own(self):
        # The identity service (switchyard image, non-root, no network) runs before every sidecar
        # and HAProxy; it alone mounts the CA's volume; each consumer mounts its own identity's
        # volume read-only at /identity, and nothing else of the issuer's.
        services = compose_services(COMPOSE_FILE)
        identity = services["identity"]
        self.assertEqual(identity["entrypoint"], ["issue-identities"])
        self.assertRegex(identity["image"], r"switchyard:\$\{TAG")
        self.assertNotIn("user", identity, "the image's non-root user issues")
        self.assertEqual(identity.get("network_mode"), "none")
        self.assertEqual(str(identity.get("restart")), "no")
        issued = {a.split(":")[0]: a.split(":")[1] for a in identity["command"] if ":/" in a}
        self.assertEqual(set(issued), set(SERVICES) | {"edge"})
        volume_at = {v.split(":")[1]: v.split(":")[0] for v in identity["volumes"]}
        ca_volume = volume_at[identity["command"][identity["command"].index("--ca") + 1]]
        consumers = {name: name for name in SERVICES}
        consumers["haproxy"] = "edge"
        for name, svc in services.items():
            volumes = [v.split(":")[0] for v in svc.get("volumes", [])]
            if name != "identity":
                self.assertNotIn(ca_volume, volumes, f"{name} mounts the CA's volume")
            if name not in consumers:
                continue
            with self.subTest(service=name):
                own = volume_at[issued[consumers[name]]]
                self.assertIn(f"{own}:/identity:ro", svc["volumes"])
                others = {volume_at[d] for d in issued.values()} - {own}
                self.assertFalse(others & set(volumes), f"{name} mounts another identity")
                self.assertEqual(svc["depends_on"]["identity"], {"condition": "service_completed_successfully"})
                if name in SERVICES:
                    self.assertEqual(list(secret_refs(svc)), [("admin-token", "admin-token")])

    def test_compose_admin_token_is_a_secret_outside_git_and_images(self):
        doc = load_yaml(COMPOSE_FILE)
        source = doc["secrets"]["admin-token"]["file"]
        path = os.path.normpath(os.path.join(REPO, "compose", source))
        relpath = os.path.relpath(path, REPO)
        ignored_by_git = subprocess.run(["git", "-C", REPO, "check-ignore", "-q", relpath]).returncode == 0
        self.assertTrue(ignored_by_git, f"{relpath} is not ignored by git")
        tracked = subprocess.run(["git", "-C", REPO, "ls-files", "--error-unmatch", relpath], capture_output=True)
        self.assertNotEqual(tracked.returncode, 0, f"{relpath} is committed")
        self.assertTrue(ignored(relpath, dockerignore_patterns()), f"{relpath} could be copied into an image")
        with open(os.path.join(REPO, "Makefile"), encoding="utf-8") as f:
            makefile = f.read()
        self.assertIn(f"ADMIN_TOKEN_FILE := {relpath}", makefile, "make compose-up creates the token file")
        self.assertRegex(makefile, r"(?m)^compose-up:.*\$\(ADMIN_TOKEN_FILE\)")


RANCHER_SERVICE_KEYS = {
    "scale", "start_on_create", "health_check", "upgrade_strategy", "lb_config", "retain_ip",
    "metadata", "default_cert", "certs",
}
HEALTH_CHECK_KEYS = {
    "port", "request_line", "interval", "response_timeout", "healthy_threshold", "unhealthy_threshold",
    "initializing_timeout", "reinitializing_timeout", "strategy", "recreate_on_quorum_strategy_config",
}
# Rancher's HAProxy checks write a request line as METHOD "PATH" "VERSION".
REQUEST_LINE = re.compile(r'(GET|HEAD|OPTIONS) "/[^" ]*" "HTTP/1\.[01]"')


class RancherStacks(unittest.TestCase):
    def stack(self, name):
        base = os.path.join(REPO, "rancher", name)
        return compose_services(os.path.join(base, "docker-compose.yml")), load_yaml(
            os.path.join(base, "rancher-compose.yml")
        )

    def sidekicks(self, services):
        """{sidekick: primary} from io.rancher.sidekicks labels."""
        out = {}
        for name, svc in services.items():
            label = (svc.get("labels") or {}).get("io.rancher.sidekicks")
            for kick in filter(None, (label or "").split(",")):
                out[kick.strip()] = name
        return out

    def test_rancher_compose_matches_docker_compose(self):
        for stack in RANCHER_STACKS:
            services, rancher = self.stack(stack)
            self.assertEqual(str(rancher.get("version")), "2", stack)
            kicks = self.sidekicks(services)
            for name, settings in rancher["services"].items():
                with self.subTest(stack=stack, service=name):
                    self.assertIn(name, services, "rancher-compose.yml names a service docker-compose.yml lacks")
                    self.assertNotIn(name, kicks, "a sidekick follows its primary: no settings of its own")
                    self.assertLessEqual(set(settings), RANCHER_SERVICE_KEYS)
                    check = settings.get("health_check")
                    if check:
                        self.assertLessEqual(set(check), HEALTH_CHECK_KEYS)
                        self.assertIsInstance(check["port"], int)
                        for key in ("interval", "response_timeout", "healthy_threshold", "unhealthy_threshold"):
                            self.assertIsInstance(check.get(key), int, key)
                        if "request_line" in check:
                            self.assertRegex(check["request_line"], REQUEST_LINE)
            for name, svc in services.items():
                global_ = (svc.get("labels") or {}).get("io.rancher.scheduler.global") == "true"
                if name not in kicks and not global_:
                    self.assertIn(name, rancher["services"], f"{stack}/{name}: no scale in rancher-compose.yml")

    def test_forex_sidekicks_share_their_apps_network(self):
        services, rancher = self.stack("forex")
        kicks = self.sidekicks(services)
        expected = {f"{s}-sidecar": s for s in SERVICES}
        expected.update({f"{s}-identity": s for s in SERVICES + ["forex-edge"]})
        self.assertEqual(kicks, expected)
        for kick, primary in kicks.items():
            if not kick.endswith("-sidecar"):
                continue
            svc = services[kick]
            self.assertEqual(svc["network_mode"], f"container:{primary}")
            self.assertEqual(svc["command"], ["run", f"/etc/switchyard/{primary}.yaml"])
            self.assertIn("switchyard:", svc["image"])
            self.assertEqual(env_of(svc).get("SERVICE_IGNORE"), "1", "registrator registers the app container")
        for name in SERVICES:
            settings = rancher["services"][name]
            self.assertIn("upgrade_strategy", settings)
            self.assertIn("health_check", settings)
            self.assertGreaterEqual(settings["scale"], 1)

    def test_forex_identity_sidekicks_issue_before_and_beside_their_sidecar(self):
        # One start_once sidekick per instance issues its service's identity into a volume its
        # switchyard container mounts (volumes_from); the CA secrets reach these sidekicks only,
        # the admin token the switchyard containers only.
        services, _ = self.stack("forex")
        ca_secrets = {"switchyard-ca-cert", "switchyard-ca-key"}
        identities = {"forex-rate": "forex-rate", "forex-converter": "forex-converter", "forex-web": "forex-web"}
        identities["forex-edge"] = "edge"
        runners = {f"{s}-sidecar": s for s in SERVICES}
        runners["forex-edge"] = "forex-edge"
        for primary, identity in identities.items():
            kick = services[f"{primary}-identity"]
            with self.subTest(sidekick=f"{primary}-identity"):
                self.assertEqual(kick["entrypoint"], ["issue-identities"])
                self.assertIn("switchyard:", kick["image"])
                self.assertEqual(kick["command"][-1], f"{identity}:/identity")
                self.assertNotIn("--create-ca", kick["command"], "Rancher's CA comes from secrets")
                self.assertIn("/identity", kick["volumes"])
                self.assertEqual(kick.get("network_mode"), "none")
                self.assertEqual(kick["labels"].get("io.rancher.container.start_once"), "true")
                self.assertEqual({s for s, _ in secret_refs(kick)}, ca_secrets)
        for name, svc in services.items():
            refs = {s for s, _ in secret_refs(svc)}
            if name in runners:
                with self.subTest(runner=name):
                    self.assertEqual(svc["volumes_from"], [f"{runners[name]}-identity"])
                    self.assertEqual(list(secret_refs(svc)), [("switchyard-admin-token", "admin-token")])
            elif not name.endswith("-identity"):
                self.assertFalse(refs, f"{name} gets secrets")
        declared = load_yaml(os.path.join(REPO, "rancher", "forex", "docker-compose.yml"))["secrets"]
        for name, secret in declared.items():
            self.assertEqual(secret, {"external": True}, f"{name}: created by the operator, not in this file")

    def test_forex_load_balancer_targets_forex_webs_ingress(self):
        services, rancher = self.stack("forex")
        rules = rancher["services"]["forex-lb"]["lb_config"]["port_rules"]
        self.assertEqual(len(rules), 1)
        rule = rules[0]
        # Through the edge routers: forex-web's ingress admits only identity "edge", which the
        # load balancer cannot present.
        self.assertEqual((rule["service"], rule["target_port"], rule["source_port"]), ("forex-edge", 4140, 80))
        self.assertIn("80:80/tcp", services["forex-lb"]["ports"])
        self.assertEqual(services["forex-edge"]["command"], ["run", "/etc/switchyard/edge.yaml"])

    def test_cross_stack_links_name_existing_services(self):
        known = {stack: set(self.stack(stack)[0]) for stack in RANCHER_STACKS}
        for stack in RANCHER_STACKS:
            for name, svc in self.stack(stack)[0].items():
                for link in svc.get("external_links", []):
                    target, _, alias = link.partition(":")
                    other, _, service = target.partition("/")
                    with self.subTest(stack=stack, service=name, link=link):
                        self.assertIn(service, known.get(other, set()))
                        self.assertEqual(alias, "consul")


# ---------------------------------------------------------------------------------
# Config files: mounted by Compose, baked into images for Rancher


def mounts(path):
    """(service, host path, container path) of every bind mount of a Compose file."""
    base = os.path.dirname(path)
    for name, svc in compose_services(path).items():
        for volume in svc.get("volumes", []):
            if ":" not in volume:
                continue  # an anonymous volume
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                yield name, os.path.normpath(os.path.join(base, source)), target


class ConfigFiles(unittest.TestCase):
    def check_mount(self, service_env, host, target, view):
        """Runs the checker a container path calls for, on a copy with the container's paths
        (identity files, secrets) mapped by view; fails on an unknown kind."""
        if target.startswith("/etc/switchyard/"):
            require_consul(self)
            status, out, err = switchyard_check(deployment().localized(host, view))
            self.assertEqual(status, 0, out + err)
        elif target == "/usr/local/etc/haproxy/haproxy.cfg":
            local = deployment().localized(host, view)
            status, out, err = run(["haproxy", "-c", "-q", "-f", local], env=service_env)
            self.assertEqual(status, 0, out + err)
        elif target == "/etc/prometheus":
            self.check_prometheus_dir(host)
        elif target == "/etc/grafana/provisioning":
            files = glob.glob(os.path.join(host, "**", "*.y*ml"), recursive=True)
            self.assertTrue(files, f"{host}: no provisioning files")
            for f in files:
                self.assertIsInstance(load_yaml(f), dict, f)
        elif target == "/var/lib/grafana/dashboards":
            files = glob.glob(os.path.join(host, "**", "*.json"), recursive=True)
            self.assertTrue(files, f"{host}: no dashboards")
            for f in files:
                with open(f, encoding="utf-8") as fh:
                    self.assertIn("panels", json.load(fh), f)
        elif target.startswith("/var/run/docker.sock") or host == "/var/run/docker.sock":
            pass  # the Docker host's socket, for registrator
        else:
            self.fail(f"no checker for {host} mounted at {target}")

    def check_prometheus_dir(self, host):
        config = os.path.join(host, "prometheus.yml")
        self.assertTrue(os.path.isfile(config), config)
        if shutil.which("promtool") is None:
            # The `make test` prometheus step installs it; say so rather than pass silently.
            print(f"\n    note: promtool not installed: {config} only parsed as YAML", end="")
            self.assertIsInstance(load_yaml(config), dict)
            return
        status, out, err = run(["promtool", "check", "config", config])
        if status != 0 and "field consul_sd_configs not found" in out + err:
            # Debian builds Prometheus without Consul discovery (the +ds package): check
            # everything else with promtool, and the Consul parts by hand.
            status, out, err = self.check_prometheus_without_consul_sd(host)
        self.assertEqual(status, 0, out + err)

    def check_prometheus_without_consul_sd(self, host):
        """promtool on a copy whose consul_sd_configs became static targets, after
        checking those consul_sd_configs against Prometheus' documented fields."""
        known = {
            "server", "path_prefix", "token", "datacenter", "namespace", "partition", "scheme", "services",
            "tags", "node_meta", "tag_separator", "allow_stale", "refresh_interval", "basic_auth",
            "authorization", "oauth2", "proxy_url", "follow_redirects", "enable_http2", "tls_config",
        }
        with tempfile.TemporaryDirectory(prefix="containers-prom-") as tmp:
            copy_dir = os.path.join(tmp, "prometheus")
            shutil.copytree(host, copy_dir)
            config = load_yaml(os.path.join(copy_dir, "prometheus.yml"))
            for job in config.get("scrape_configs", []):
                for sd in job.pop("consul_sd_configs", []):
                    self.assertLessEqual(set(sd), known, job["job_name"])
                    self.assertRegex(sd["server"], r"^[A-Za-z0-9.-]+:[0-9]+$")
                    job.setdefault("static_configs", []).append({"targets": ["consul-discovered.invalid:9990"]})
            with open(os.path.join(copy_dir, "prometheus.yml"), "w", encoding="utf-8") as f:
                yaml.safe_dump(config, f)
            return run(["promtool", "check", "config", os.path.join(copy_dir, "prometheus.yml")])

    def test_every_mounted_file_exists_and_passes_its_checker(self):
        for path in COMPOSE_FILES:
            services = compose_services(path)
            for service, host, target in mounts(path):
                with self.subTest(file=os.path.relpath(path, REPO), service=service, mount=target):
                    if host == "/var/run/docker.sock":
                        continue
                    self.assertTrue(os.path.exists(host), f"{host} does not exist")
                    self.check_mount(env_of(services[service]), host, target, prepared_view(self, path, service))

    def test_grafana_provisioning_points_where_the_files_are(self):
        # The dashboard provider reads the folder Compose mounts and the image copies
        # to; the data source names the Prometheus both deployments run.
        provider = load_yaml(os.path.join(REPO, "grafana", "provisioning", "dashboards", "switchyard.yml"))
        paths = {p["options"]["path"] for p in provider["providers"]}
        compose_targets = {target for service, _, target in mounts(COMPOSE_FILE) if service == "grafana"}
        baked = {dest.rstrip("/") for *_, dest in copies(os.path.join(REPO, "compose", "images", "grafana.Dockerfile"))}
        self.assertLessEqual(paths, compose_targets)
        self.assertLessEqual(paths, baked)
        datasources = load_yaml(os.path.join(REPO, "grafana", "provisioning", "datasources", "prometheus.yml"))
        urls = {d["url"] for d in datasources["datasources"]}
        self.assertEqual(urls, {"http://prometheus:9090"})
        self.assertIn("prometheus", compose_services(COMPOSE_FILE))
        metrics = compose_services(os.path.join(REPO, "rancher", "metrics", "docker-compose.yml"))
        self.assertIn("prometheus:prometheus", metrics["grafana"]["links"])

    def test_configs_baked_for_rancher_pass_their_checker(self):
        # Rancher cannot mount this checkout: the sidekicks (and the edge routers) run configs
        # that the switchyard image copies from compose/sidecars/ into /etc/switchyard/, with
        # the identity their *-identity sidekick issued and the admin token secret.
        dockerfile = os.path.join(REPO, "compose", "images", "switchyard.Dockerfile")
        self.assertIn(("compose/sidecars/", "/etc/switchyard/"), copies(dockerfile))
        path = os.path.join(REPO, "rancher", "forex", "docker-compose.yml")
        services = compose_services(path)
        runs = {
            name: svc["command"]
            for name, svc in services.items()
            if "switchyard:" in svc["image"] and svc.get("command", [None])[0] == "run"
        }
        self.assertEqual(len(runs), 4, runs)
        require_consul(self)
        for name, command in runs.items():
            with self.subTest(service=name):
                host = os.path.join(SIDECARS_DIR, os.path.basename(command[1]))
                status, out, err = switchyard_check(deployment().localized(host, prepared_view(self, path, name)))
                self.assertEqual(status, 0, out + err)


# ---------------------------------------------------------------------------------
# Zero trust: mutual TLS between sidecars, admin tokens, no secrets in images


def tls_entries(client):
    """The client TLS settings of a raw (YAML) router client: (prefix, tls) of each configs entry,
    and (None, tls) for a global client.tls."""
    out = [(None, client["tls"])] if "tls" in client else []
    return out + [(entry["prefix"], entry["tls"]) for entry in client.get("configs", []) if "tls" in entry]


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def identity_files(name):
    return {"certPath": f"/identity/{name}.pem", "keyPath": f"/identity/{name}.key"}


class ZeroTrust(unittest.TestCase):
    def config(self, name):
        return load_yaml(os.path.join(SIDECARS_DIR, f"{name}.yaml"))

    def test_every_ingress_is_mutual_tls_admitting_only_its_caller(self):
        for name in SERVICES:
            with self.subTest(service=name):
                ingress = [r for r in self.config(name)["routers"] if r["label"] == "ingress"][0]
                for server in ingress["servers"]:
                    tls = server.get("tls") or {}
                    self.assertEqual(
                        tls,
                        dict(identity_files(name), caCertPath="/identity/ca.pem", requireClientAuth=True),
                    )
                    self.assertEqual(server.get("authorization"), {"allow": [spiffe(CALLER[name])]})
                    if name == "forex-web":
                        self.assertTrue(server["clearContext"], "forex-web's ingress faces the public")

    def test_every_listener_beyond_loopback_is_mutual_tls_or_the_public_edge(self):
        # Beyond loopback, only the edge's front (Rancher's load balancer sends plain HTTP there)
        # and the admin (token) are not mutual TLS.
        for path in sorted(glob.glob(os.path.join(SIDECARS_DIR, "*.yaml"))):
            name = os.path.basename(path)[: -len(".yaml")]
            for router in load_yaml(path)["routers"]:
                for server in router["servers"]:
                    if server["ip"].startswith("127."):
                        continue
                    with self.subTest(config=name, router=router["label"]):
                        if name == "edge":
                            self.assertTrue(server["clearContext"], "the edge trusts no context from outside")
                            self.assertNotIn("tls", server)
                        else:
                            self.assertTrue(server.get("tls", {}).get("requireClientAuth"))
                            self.assertIn("allow", server.get("authorization", {}))

    def test_every_client_speaks_tls_as_its_own_identity(self):
        # Every router that calls the mesh (egress; the edge's one router) sends mutual TLS to
        # whatever its namer finds, checking the peer's name and presenting its own identity.
        expected_prefix = "/#/io.l5d.consul/*/{service}"
        for name in SERVICES + ["edge"]:
            config = self.config(name)
            callers = [r for r in config["routers"] if r["label"] in ("egress", "edge")]
            self.assertEqual(len(callers), 1, name)
            entries = tls_entries(callers[0].get("client", {}))
            with self.subTest(config=name):
                self.assertTrue(entries, "no client TLS")
                self.assertEqual(entries[0][0], expected_prefix)
                self.assertEqual(entries[0][1]["commonName"], "{service}." + TRUST_DOMAIN)
                for prefix, tls in entries:
                    self.assertEqual(tls.get("clientAuth"), identity_files(name), prefix)
                    self.assertEqual(tls.get("trustCerts"), ["/identity/ca.pem"], prefix)
                    self.assertNotIn("disableValidation", tls, prefix)
                    self.assertTrue(tls["commonName"].endswith("." + TRUST_DOMAIN), prefix)

    def test_every_admin_beyond_loopback_needs_a_mounted_token(self):
        # A committed `token:` would be a secret in git; the file is a secret the orchestrator mounts.
        for path in sorted(glob.glob(os.path.join(SIDECARS_DIR, "*.yaml"))):
            admin = load_yaml(path)["admin"]
            with self.subTest(config=os.path.basename(path)):
                self.assertNotIn("token", admin)
                if not str(admin.get("ip", "127.0.0.1")).startswith("127."):
                    self.assertEqual(admin.get("tokenFile"), TOKEN_FILE)

    def test_issuers_issue_what_the_configs_read_and_rotate_in_place(self):
        # The issuers, run as their files say: every identity a config names exists, says the
        # right SPIFFE ID, and a second run replaces the keys but keeps the CA.
        d = deployment()
        consumers = [(COMPOSE_FILE, name, name) for name in SERVICES] + [(COMPOSE_FILE, "haproxy", "edge")]
        rancher_file = os.path.join(REPO, "rancher", "forex", "docker-compose.yml")
        consumers += [(rancher_file, f"{s}-sidecar", s) for s in SERVICES] + [(rancher_file, "forex-edge", "edge")]
        for compose_file, service, identity in consumers:
            with self.subTest(file=os.path.relpath(compose_file, REPO), service=service):
                folder = prepared_view(self, compose_file, service)["/identity"]
                self.assertEqual(sorted(f for f in os.listdir(folder) if not f.startswith(".")),
                                 sorted(["ca.pem", f"{identity}.pem", f"{identity}.key"]
                                        + ([f"{identity}.bundle.pem"] if service == "haproxy" else [])))
                status, out, err = run([SWITCHYARD, "identity", "show", os.path.join(folder, f"{identity}.pem")])
                self.assertEqual(status, 0, err)
                self.assertRegex(out, rf"(?m)^identity:\s+{re.escape(spiffe(identity))}$")
                self.assertEqual(os.stat(os.path.join(folder, f"{identity}.key")).st_mode & 0o077, 0, "key mode")
        view = prepared_view(self, COMPOSE_FILE, "identity")
        ca_dir = view["/var/lib/switchyard/ca"]
        web = os.path.join(view["/identities/forex-web"], "forex-web.key")
        ca_key = os.path.join(ca_dir, "ca.key")
        before = {f: read_bytes(f) for f in (web, ca_key)}
        d.issued.pop((COMPOSE_FILE, "identity"))
        status, output = d.issue(COMPOSE_FILE, "identity")
        self.assertEqual(status, 0, output)
        self.assertNotEqual(read_bytes(web), before[web], "a second run issues a new key")
        self.assertEqual(read_bytes(ca_key), before[ca_key], "and keeps the CA")
        self.assertFalse(glob.glob(os.path.join(view["/identities/forex-web"], ".issuing.*")), "no leftovers")

    def test_haproxy_verifies_forex_webs_certificate_and_presents_edge(self):
        with open(HAPROXY_CFG, encoding="utf-8") as f:
            text = f.read()
        self.assertNotRegex(text, r"verify\s+none")
        servers = [line.split() for line in text.splitlines() if line.strip().startswith(("server ", "server-template"))]
        self.assertTrue(servers)
        for words in servers:
            with self.subTest(server=words[1]):
                def after(word):
                    self.assertIn(word, words)
                    return words[words.index(word) + 1]
                self.assertIn("ssl", words)
                self.assertEqual(after("verify"), "required")
                self.assertEqual(after("ca-file"), "/identity/ca.pem")
                self.assertEqual(after("verifyhost"), "forex-web." + TRUST_DOMAIN)
                self.assertEqual(after("crt"), "/identity/edge.bundle.pem")
                self.assertEqual(after("alpn"), "http/1.1")

    def test_no_image_carries_a_key_or_a_secret(self):
        # What the Dockerfiles copy from the build context holds no private key, certificate or
        # token; identities and the token are mounted at run time.
        patterns = dockerignore_patterns()
        for name, dockerfile, source in copied_sources():
            with self.subTest(image=name, source=source):
                self.assertNotRegex(source, r"(\.key|\.pem|\.crt|secret|token)$")
                for match in glob.glob(os.path.join(REPO, source)):
                    files = [match] if os.path.isfile(match) else [
                        os.path.join(root, f) for root, _, fs in os.walk(match) for f in fs
                    ]
                    for f in files:
                        rel = os.path.relpath(f, REPO)
                        if ignored(rel, patterns):
                            continue
                        self.assertFalse(re.search(r"\.(key|pem|crt|p12)$", f), rel)
                        with open(f, "rb") as fh:
                            self.assertNotIn(b"PRIVATE KEY-----", fh.read(), rel)
        for path in ("compose/secrets", "compose/secrets/admin-token"):
            self.assertTrue(ignored(path, patterns), f"{path} is not .dockerignored")


# ---------------------------------------------------------------------------------
# Dockerfiles


def instructions(dockerfile):
    """[(stage index, INSTRUCTION, argument text)], continuation lines joined."""
    with open(dockerfile, encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    out, stage = [], -1
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage += 1
        out.append((stage, word, rest.strip()))
    return out


def copies(dockerfile, from_stage=False):
    """(sources..., destination) of COPY/ADD from the build context (or from a stage)."""
    found = []
    for _, word, rest in instructions(dockerfile):
        if word not in ("COPY", "ADD"):
            continue
        parts = rest.split()
        flags = [p for p in parts if p.startswith("--")]
        args = [p for p in parts if not p.startswith("--")]
        if any(f.startswith("--from=") for f in flags) == from_stage:
            found.append(tuple(args))
    return found


def copied_sources():
    """(image, Dockerfile, source) for every path each image's Dockerfile COPYs from the build context (with
    ${SERVICE} set to one service, forex-rate)."""
    for name, dockerfile, _ in images_list():
        for *sources, _dest in copies(os.path.join(REPO, dockerfile)):
            for source in sources:
                yield name, dockerfile, source.replace("${SERVICE}", "forex-rate")


def dockerignore_patterns():
    path = os.path.join(REPO, ".dockerignore")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def ignored(relpath, patterns):
    parts = relpath.split("/")
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        for i in range(1, len(parts) + 1):
            if fnmatch.fnmatch("/".join(parts[:i]), pattern.replace("**/", "*")):
                return True
    return False


class Dockerfiles(unittest.TestCase):
    def test_build_contexts_hold_what_the_dockerfiles_copy(self):
        patterns = dockerignore_patterns()
        for name, dockerfile, source in copied_sources():
            with self.subTest(image=name, source=source):
                matches = glob.glob(os.path.join(REPO, source))
                self.assertTrue(matches, f"{dockerfile}: COPY {source}: not in the build context")
                self.assertFalse(ignored(source.rstrip("/"), patterns), f"{source} is .dockerignored")

    def test_dockerignore_keeps_build_output_out(self):
        patterns = dockerignore_patterns()
        for path in ("target", "run", ".git"):
            self.assertTrue(ignored(path, patterns), path)

    def test_rust_builds_copy_the_whole_workspace(self):
        with open(os.path.join(REPO, "Cargo.toml"), encoding="utf-8") as f:
            members = re.search(r"members\s*=\s*\[([^\]]*)\]", f.read()).group(1)
        members = re.findall(r'"([^"]+)"', members)
        for dockerfile in ("switchyard.Dockerfile", "service.Dockerfile"):
            path = os.path.join(REPO, "compose", "images", dockerfile)
            copied = [s.rstrip("/") for *sources, _ in copies(path) for s in sources]
            self.assertIn("Cargo.lock", copied, "cargo build --locked needs Cargo.lock")
            for member in members:
                self.assertTrue(
                    any(member == c or member.startswith(c + "/") for c in copied),
                    f"{dockerfile}: workspace member {member} not copied",
                )

    def test_images_run_as_non_root_with_a_health_check(self):
        for name, dockerfile, _ in images_list():
            steps = instructions(os.path.join(REPO, dockerfile))
            last = max(stage for stage, _, _ in steps)
            final = {word: rest for stage, word, rest in steps if stage == last}
            with self.subTest(image=name):
                self.assertIn("HEALTHCHECK", final)
                user = final.get("USER")
                # Prometheus and Grafana keep their base images' non-root users.
                if user is not None:
                    self.assertNotIn(user.split(":")[0], ("0", "root"))
                else:
                    self.assertRegex(final["FROM"], r"^(prom/prometheus|grafana/grafana):")

    def test_service_images_carry_what_they_run(self):
        # The binaries copied from the build stage are those cargo builds, the build
        # arguments images.sh passes are declared, and the ports registrator registers
        # are exposed.
        for name, dockerfile, args in images_list():
            path = os.path.join(REPO, dockerfile)
            steps = instructions(path)
            declared = {rest.split("=")[0] for _, word, rest in steps if word == "ARG"}
            self.assertLessEqual(set(args), declared, name)
            for *sources, _ in copies(path, from_stage=True):
                for source in sources:
                    binary = os.path.basename(source).replace("${SERVICE}", args.get("SERVICE", ""))
                    self.assertIn(binary, ["switchyard"] + SERVICES, f"{name}: {source}")
            if name in SERVICES:
                exposed = " ".join(rest for _, word, rest in steps if word == "EXPOSE").split()
                self.assertLessEqual({"8080", "4140", "4141", "9990"}, set(exposed))
        for script in ("probe", "with-sidecar", "issue-identities"):
            self.assertTrue(os.access(os.path.join(REPO, "compose", "images", script), os.X_OK), script)

    def test_compose_files_use_the_images_make_services_builds(self):
        built = {name for name, _, _ in images_list()}
        for path in COMPOSE_FILES:
            for name, svc in compose_services(path).items():
                image = svc["image"]
                if "${" in image:  # ours: ${IMAGE_PREFIX…}<name>:${TAG…}
                    bare = re.sub(r"\$\{[^}]*\}", "", image).rstrip(":")
                    self.assertIn(bare, built, f"{os.path.relpath(path, REPO)}: {name}: {image}")


# ---------------------------------------------------------------------------------
# Same configs everywhere

ADDR = "<address>"


def discovery(text):
    """Names through a namer, whichever it is (/#/io.l5d.consul/<dc> or /#/io.l5d.fs)."""
    text = re.sub(r"/#/io\.l5d\.consul/[^/\s;\]]+", "/#/<discovery>", text)
    return re.sub(r"/#/io\.l5d\.fs", "/#/<discovery>", text)


def split_security(c):
    """Takes the security settings out of parsed config c (in place) and returns them as
    {where: setting}, with file paths reduced to file names (where the files are is the
    deployment's business) and namer prefixes to /#/<discovery>. admin.hosts (the names a
    deployment reaches its admin APIs by) is dropped, like the addresses."""
    sec = {}
    admin = c["admin"]
    admin.pop("hosts", None)
    for key in ("token", "tls"):
        if key in admin:
            sec[f"admin.{key}"] = admin.pop(key)
    for router in c["routers"]:
        label = router["label"]
        for i, server in enumerate(router.get("servers", [])):
            for key in ("tls", "authorization"):
                if key in server:
                    sec[f"{label}.servers[{i}].{key}"] = server.pop(key)
        client = router.get("client", {})
        if "tls" in client:
            sec[f"{label}.client.tls"] = client.pop("tls")
        if "configs" in client:
            rest = []
            for entry in map(dict, client["configs"]):
                if "tls" in entry:
                    sec[f"{label}.client.configs[{discovery(entry['prefix'])}].tls"] = entry.pop("tls")
                if set(entry) - {"prefix"}:
                    rest.append(entry)
            if rest:
                client["configs"] = rest
            else:
                client.pop("configs")
    return json.loads(re.sub(r'"/(?:[^"/]*/)*([^"/]+)"', r'"\1"', json.dumps(sec)))


def normalize(config):
    """The parsed config with what may differ between deployments taken out: addresses
    (admin, servers, /$/inet in dtabs), access log files, and discovery — the namers and the routers' dtab
    stores (file registry vs Consul), returned by kind for the caller to compare — and the security
    settings (split_security), returned for the caller to compare too."""
    c = copy.deepcopy(config)
    namers = [n.get("kind") for n in c.pop("namers", [])]
    namers += [f"{r['label']}.dtabStore={r.pop('dtabStore')['kind']}" for r in c["routers"] if r.get("dtabStore")]
    security = split_security(c)
    c["admin"]["ip"] = ADDR
    for router in c["routers"]:
        for server in router.get("servers", []):
            server["ip"] = ADDR
        # Where access logs go is the deployment's business (a run folder locally, stdout in containers).
        if "httpAccessLog" in router:
            router["httpAccessLog"] = "<log file>"
        dtab = router.get("dtab", "")
        dtab = re.sub(r"/\$/inet/[^/\s;]+/", f"/$/inet/{ADDR}/", dtab)
        router["dtab"] = discovery(dtab)
    return c, namers, security


class SameConfigsEverywhere(unittest.TestCase):
    maxDiff = None  # a difference is shown whole: it names the key to bring in step
    @classmethod
    def setUpClass(cls):
        cls.run_dir = tempfile.mkdtemp(prefix="containers-render-")
        status, out, err = run(
            [os.path.join(REPO, "mesh", "mesh.sh"), "render"], env={"RUN_DIR": cls.run_dir, "MESH_NET": NET}
        )
        assert status == 0, out + err

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.run_dir, ignore_errors=True)

    def parsed(self, path):
        status, out, err = switchyard_check(path, as_json=True)
        self.assertEqual(status, 0, f"{path}: {err}")
        return json.loads(out)

    def test_container_sidecars_differ_from_local_only_in_addresses_and_namer(self):
        require_consul(self)
        for service in SERVICES:
            with self.subTest(service=service):
                local, local_namers, local_security = normalize(
                    self.parsed(os.path.join(self.run_dir, f"{service}-1", "sidecar.yaml"))
                )
                # As the container sees it: its identity files and token (ZeroTrust checks them).
                view = prepared_view(self, COMPOSE_FILE, service)
                container, container_namers, container_security = normalize(
                    self.parsed(deployment().localized(os.path.join(SIDECARS_DIR, f"{service}.yaml"), view))
                )
                # Discovery: files locally, Consul in containers; the mesh-wide egress dtab
                # in Consul KV (locally a file store once mesh.sh uses one, issue 3).
                self.assertEqual(container_namers, ["io.l5d.consul", "egress.dtabStore=io.l5d.consul"])
                self.assertIn(local_namers, (["io.l5d.fs"], ["io.l5d.fs", "egress.dtabStore=io.l5d.fs"]))
                self.assertEqual(container, local)
                # Security: the same TLS, authorization and token settings once the local mesh has
                # them too. Until mesh.sh renders them (issue 10), the local mesh runs on loopback
                # without, and ZeroTrust alone checks the containers'. Containers only: the README's
                # forex-rate-v2 rollout (its certificate names forex-rate).
                container_security = {k: v for k, v in container_security.items() if "forex-rate-v2" not in k}
                if local_security:
                    self.assertEqual(container_security, local_security)

    def test_normalize_keeps_every_other_difference(self):
        # The comparison must be able to fail: a port, a timeout or a dtab rule changed
        # on one side only is still a difference after normalising.
        local = self.parsed(os.path.join(self.run_dir, "forex-rate-1", "sidecar.yaml"))
        for mutate in (
            lambda c: c["routers"][0]["servers"][0].update(port=4999),
            lambda c: c["routers"][1].update(dtab=c["routers"][1]["dtab"] + "/svc/x=>/$/fail;"),
            lambda c: c["routers"][0]["servers"][0].update(clearContext=not c["routers"][0]["servers"][0]["clearContext"]),
        ):
            changed = copy.deepcopy(local)
            mutate(changed)
            self.assertNotEqual(normalize(changed)[0], normalize(local)[0])
        # A security setting is compared on its own, file paths aside.
        secured = copy.deepcopy(local)
        secured["routers"][0]["servers"][0]["authorization"] = {"allow": [spiffe("forex-converter")]}
        other = copy.deepcopy(secured)
        other["routers"][0]["servers"][0]["authorization"] = {"allow": [spiffe("forex-web")]}
        self.assertEqual(normalize(secured)[0], normalize(local)[0])
        self.assertNotEqual(normalize(secured)[2], normalize(other)[2])
        moved_files = copy.deepcopy(secured)
        moved_files["routers"][0]["servers"][0]["tls"] = {"certPath": "/identity/forex-rate.pem"}
        secured["routers"][0]["servers"][0]["tls"] = {"certPath": "/run/mesh/forex-rate-1/forex-rate.pem"}
        self.assertEqual(normalize(secured)[2], normalize(moved_files)[2])
        moved = copy.deepcopy(local)
        moved["admin"]["ip"] = "10.1.2.3"
        self.assertEqual(normalize(moved)[0], normalize(local)[0])


# ---------------------------------------------------------------------------------
# What runs in the images, run here for real


class Backend(http.server.BaseHTTPRequestHandler):
    """A stand-in forex-web ingress: /health is 200 only when Host names the service,
    as the sidecar would route it; every other path echoes what it received."""

    def do_GET(self):
        if self.path == "/health":
            code = 200 if self.headers.get("Host") == "forex-web" else 400
            body = b"{}"
        elif self.path == "/unhealthy":
            code, body = 503, b"{}"
        else:
            code = 200
            body = json.dumps({"host": self.headers.get("Host"), "xff": self.headers.get("X-Forwarded-For")}).encode()
        self.server.requests += 1
        try:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # HAProxy closes a health check once it has the status line

    def log_message(self, *args):
        pass


class TlsServer(http.server.ThreadingHTTPServer):
    """Backend over mutual TLS, as a sidecar's ingress serves it: its certificate, and callers'
    certificates required from the CA. Records callers' SPIFFE IDs; a failed handshake is no
    request."""

    daemon_threads = True

    def __init__(self, address, context):
        super().__init__(address, Backend)
        self.context = context
        self.callers = []

    def finish_request(self, request, client_address):
        try:
            conn = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            sans = conn.getpeercert().get("subjectAltName", ())
            self.callers += [value for kind, value in sans if kind == "URI"]
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    def handle_error(self, request, client_address):
        pass


def serve(ip, identity=None):
    """A Backend on ip; over mutual TLS with identity (folder, name) when given."""
    if identity is None:
        server = http.server.ThreadingHTTPServer((ip, 0), Backend)
    else:
        folder, name = identity
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(os.path.join(folder, f"{name}.pem"), os.path.join(folder, f"{name}.key"))
        context.load_verify_locations(os.path.join(folder, "ca.pem"))
        context.verify_mode = ssl.CERT_REQUIRED
        context.set_alpn_protocols(["http/1.1"])
        server = TlsServer((ip, 0), context)
    server.requests = 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port(ip):
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def http_get(ip, port, path, host=None, tls=None):
    """(status, body) or None when nothing answers; over TLS with tls=(SSLContext, server name)."""
    try:
        with socket.create_connection((ip, port), timeout=5) as raw:
            s = tls[0].wrap_socket(raw, server_hostname=tls[1]) if tls else raw
            with s:
                s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host or ip}\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
    except (OSError, ssl.SSLError):
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        return None
    return int(head.split()[1]), body.decode(errors="replace")


def eventually(probe, what):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {DEADLINE_S}s")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RunsForReal(unittest.TestCase):
    def test_health_probe(self):
        server = serve(f"{NET}.9.2")
        try:
            probe = os.path.join(REPO, "compose", "images", "probe")
            ip, port = server.server_address
            self.assertEqual(run([probe, ip, str(port), "/health", "forex-web"])[0], 0)
            self.assertEqual(run([probe, ip, str(port), "/health"])[0], 1, "400 is not healthy")
            self.assertEqual(run([probe, ip, str(port), "/unhealthy", "forex-web"])[0], 1)
            self.assertEqual(run([probe, ip, str(free_port(ip)), "/health"])[0], 1, "nothing listening")
        finally:
            server.shutdown()
            server.server_close()

    def start_haproxy(self, backend, ip):
        """The Compose HAProxy config, its /identity the Compose edge identity issued here, in
        front of backend; (process, public port, stats port)."""
        public, stats = free_port(ip), free_port(ip)
        env = {
            "PUBLIC_BIND": f"{ip}:{public}",
            "STATS_BIND": f"{ip}:{stats}",
            "FOREX_WEB": "%s:%d" % backend.server_address,
        }
        cfg = deployment().localized(HAPROXY_CFG, prepared_view(self, COMPOSE_FILE, "haproxy"))
        proc = subprocess.Popen(
            ["haproxy", "-db", "-f", cfg],
            env=dict(os.environ, **env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return proc, public, stats

    def server_states(self, ip, stats):
        csv = http_get(ip, stats, "/stats;csv")
        lines = csv[1].splitlines() if csv else []
        return [line.split(",")[17] for line in lines if line.startswith("forex-web,web")]

    def test_compose_haproxy_config_serves_through_its_health_checked_backend(self):
        # forex-web as its sidecar serves it: mutual TLS with the identity the Compose identity
        # service issues to forex-web; HAProxy must present edge's.
        web = prepared_view(self, COMPOSE_FILE, "forex-web")["/identity"]
        backend = serve(f"{NET}.9.2", (web, "forex-web"))
        ip = f"{NET}.9.1"
        proc, public, stats = self.start_haproxy(backend, ip)
        try:
            answer = eventually(lambda: (r := http_get(ip, public, "/")) and r[0] == 200 and r, "HAProxy → backend")
            seen = json.loads(answer[1])
            self.assertEqual(seen["host"], "forex-web", "HAProxy names the logical service")
            self.assertTrue(seen["xff"], "option forwardfor adds X-Forwarded-For")
            self.assertIn("UP", self.server_states(ip, stats), "health-checked servers are UP")
            self.assertEqual(set(backend.callers), {spiffe("edge")}, "HAProxy's certificate (checks too) is edge's")
        finally:
            stop(proc)
            backend.shutdown()
            backend.server_close()

    def test_compose_haproxy_refuses_a_backend_that_is_not_forex_web(self):
        # Same CA, another service's certificate: HAProxy's verifyhost fails the handshake, so no
        # request (nor health check) ever reaches it, and the server is DOWN.
        rate = prepared_view(self, COMPOSE_FILE, "forex-rate")["/identity"]
        backend = serve(f"{NET}.9.3", (rate, "forex-rate"))
        ip = f"{NET}.9.1"
        proc, public, stats = self.start_haproxy(backend, ip)
        try:
            eventually(lambda: "DOWN" in self.server_states(ip, stats), "the impostor marked DOWN")
            answer = http_get(ip, public, "/")
            self.assertEqual(answer and answer[0], 503)
            self.assertEqual(backend.requests, 0)
        finally:
            stop(proc)
            backend.shutdown()
            backend.server_close()

    def test_with_sidecar_runs_app_and_sidecar_and_stops_both(self):
        for binary in ("switchyard", "forex-rate"):
            if not os.access(os.path.join(BIN, binary), os.X_OK):
                self.fail(f"{BIN}/{binary} missing: compose/check/run.sh builds it")
        run_dir = tempfile.mkdtemp(prefix="containers-pod-")
        try:
            status, out, err = run(
                [os.path.join(REPO, "mesh", "mesh.sh"), "render"], env={"RUN_DIR": run_dir, "MESH_NET": NET}
            )
            self.assertEqual(status, 0, out + err)
            ip = f"{NET}.3.1"
            config = os.path.join(run_dir, "forex-rate-1", "sidecar.yaml")
            self.ingress_tls = self.caller_tls(config, run_dir)
            env = dict(
                os.environ,
                PATH=f"{BIN}:{os.environ['PATH']}",
                SWITCHYARD_CONFIG=config,
                SERVICE="forex-rate",
                FOREX_LISTEN=f"{ip}:8080",
            )
            for how in ("SIGTERM to the container", "the app dies"):
                with self.subTest(how=how):
                    self.check_pod(env, ip, how)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def caller_tls(self, config, run_dir):
        """(client context, server name) for calling the rendered sidecar's ingress as its allowed
        caller, when that ingress is mutual TLS (mesh.sh issues identities into the run folder's
        identity/<name>/); None when it is plaintext."""
        ingress = [r for r in load_yaml(config)["routers"] if r["label"] == "ingress"][0]["servers"][0]
        if "tls" not in ingress:
            return None
        caller = ingress["authorization"]["allow"][0].rsplit("/", 1)[1]
        folder = os.path.join(run_dir, "identity", caller)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(ingress["tls"]["caCertPath"])
        context.load_cert_chain(os.path.join(folder, f"{caller}.pem"), os.path.join(folder, f"{caller}.key"))
        return context, f"forex-rate.{TRUST_DOMAIN}"

    def check_pod(self, env, ip, how):
        tls = self.ingress_tls
        self.assertIsNone(http_get(ip, 4140, "/health", tls=tls), f"{ip}:4140 is taken by another process")
        entry = os.path.join(REPO, "compose", "images", "with-sidecar")
        proc = subprocess.Popen([entry], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # The sidecar routes to the app: both run in this one "container".
            eventually(
                lambda: (r := http_get(ip, 4140, "/health", "forex-rate", tls=tls)) and r[0] == 200, "ingress → app"
            )
            children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            self.assertEqual(len(children), 2, children)
            if how == "the app dies":
                app = [c for c in children if "forex-rate" in _cmdline(c)]
                os.kill(int(app[0]), signal.SIGKILL)
            else:
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=DEADLINE_S)
            self.assertNotEqual(proc.returncode, 0)
            for child in children:
                self.assertFalse(os.path.exists(f"/proc/{child}") and _running(child), f"pid {child} outlived the pod")
        finally:
            stop(proc)


def _cmdline(pid):
    with open(f"/proc/{pid}/cmdline", encoding="utf-8", errors="replace") as f:
        return f.read()


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


if __name__ == "__main__":
    result = unittest.main(exit=False).result
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    print(f"containers: {result.testsRun - failed - skipped} passed, {failed} failed, {skipped} skipped")
    raise SystemExit(1 if failed else 0)
