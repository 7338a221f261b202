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
* the shipped HAProxy config, health probe and two-process entry point really run.

Run by compose/check/run.sh (`make test-containers`), with Debian's python3, which
has PyYAML because docker-compose needs it. REPO_BIN names the directory holding the
release binaries (switchyard, forex-rate).
"""

import copy
import fnmatch
import glob
import http.server
import json
import os
import re
import shutil
import signal
import socket
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
                    for port in ("4140", "9990", "8080"):
                        self.assertTrue(env.get(f"SERVICE_{port}_CHECK_HTTP", "").startswith("/"))
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
        self.assertEqual(kicks, {f"{s}-sidecar": s for s in SERVICES})
        for kick, primary in kicks.items():
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

    def test_forex_load_balancer_targets_forex_webs_ingress(self):
        services, rancher = self.stack("forex")
        rules = rancher["services"]["forex-lb"]["lb_config"]["port_rules"]
        self.assertEqual(len(rules), 1)
        rule = rules[0]
        self.assertEqual((rule["service"], rule["target_port"], rule["source_port"]), ("forex-web", 4140, 80))
        self.assertIn("80:80/tcp", services["forex-lb"]["ports"])

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
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                yield name, os.path.normpath(os.path.join(base, source)), target


class ConfigFiles(unittest.TestCase):
    def check_mount(self, service_env, host, target):
        """Runs the checker a container path calls for; fails on an unknown kind."""
        if target.startswith("/etc/switchyard/"):
            require_consul(self)
            status, out, err = switchyard_check(host)
            self.assertEqual(status, 0, out + err)
        elif target == "/usr/local/etc/haproxy/haproxy.cfg":
            status, out, err = run(["haproxy", "-c", "-q", "-f", host], env=service_env)
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
                    self.check_mount(env_of(services[service]), host, target)

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
        # Rancher cannot mount this checkout: the sidekicks run configs that the
        # switchyard image copies from compose/sidecars/ into /etc/switchyard/.
        dockerfile = os.path.join(REPO, "compose", "images", "switchyard.Dockerfile")
        self.assertIn(("compose/sidecars/", "/etc/switchyard/"), copies(dockerfile))
        services = compose_services(os.path.join(REPO, "rancher", "forex", "docker-compose.yml"))
        commands = [svc["command"] for svc in services.values() if "switchyard:" in svc["image"]]
        self.assertEqual(len(commands), 3)
        require_consul(self)
        for command in commands:
            host = os.path.join(REPO, "compose", "sidecars", os.path.basename(command[1]))
            status, out, err = switchyard_check(host)
            self.assertEqual(status, 0, out + err)


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
        for name, dockerfile, _ in images_list():
            for *sources, _dest in copies(os.path.join(REPO, dockerfile)):
                for source in sources:
                    with self.subTest(image=name, source=source):
                        source = source.replace("${SERVICE}", "forex-rate")
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
        for script in ("probe", "with-sidecar"):
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


def normalize(config):
    """The parsed config with what may differ between deployments taken out: addresses
    (admin, servers, /$/inet in dtabs), access log files, and discovery — the namers and the routers' dtab
    stores (file registry vs Consul), returned by kind for the caller to compare."""
    c = copy.deepcopy(config)
    namers = [n.get("kind") for n in c.pop("namers", [])]
    namers += [f"{r['label']}.dtabStore={r.pop('dtabStore')['kind']}" for r in c["routers"] if r.get("dtabStore")]
    c["admin"]["ip"] = ADDR
    for router in c["routers"]:
        for server in router.get("servers", []):
            server["ip"] = ADDR
        # Where access logs go is the deployment's business (a run folder locally, stdout in containers).
        if "httpAccessLog" in router:
            router["httpAccessLog"] = "<log file>"
        dtab = router.get("dtab", "")
        dtab = re.sub(r"/\$/inet/[^/\s;]+/", f"/$/inet/{ADDR}/", dtab)
        dtab = re.sub(r"/#/io\.l5d\.consul/[^/\s;]+", "/#/<discovery>", dtab)
        dtab = re.sub(r"/#/io\.l5d\.fs", "/#/<discovery>", dtab)
        router["dtab"] = dtab
    return c, namers


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
                local, local_namers = normalize(self.parsed(os.path.join(self.run_dir, f"{service}-1", "sidecar.yaml")))
                container, container_namers = normalize(
                    self.parsed(os.path.join(REPO, "compose", "sidecars", f"{service}.yaml"))
                )
                # Discovery: files locally, Consul in containers; the mesh-wide egress dtab
                # in Consul KV (locally a file store once mesh.sh uses one, issue 3).
                self.assertEqual(container_namers, ["io.l5d.consul", "egress.dtabStore=io.l5d.consul"])
                self.assertIn(local_namers, (["io.l5d.fs"], ["io.l5d.fs", "egress.dtabStore=io.l5d.fs"]))
                self.assertEqual(container, local)

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
        try:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # HAProxy closes a health check once it has the status line

    def log_message(self, *args):
        pass


def serve(ip):
    server = http.server.ThreadingHTTPServer((ip, 0), Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port(ip):
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def http_get(ip, port, path, host=None):
    """(status, body) or None when nothing answers."""
    try:
        with socket.create_connection((ip, port), timeout=5) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host or ip}\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
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

    def test_compose_haproxy_config_serves_through_its_health_checked_backend(self):
        backend = serve(f"{NET}.9.2")
        ip = f"{NET}.9.1"
        public, stats = free_port(ip), free_port(ip)
        env = {
            "PUBLIC_BIND": f"{ip}:{public}",
            "STATS_BIND": f"{ip}:{stats}",
            "FOREX_WEB": "%s:%d" % backend.server_address,
        }
        cfg = os.path.join(REPO, "compose", "haproxy", "haproxy.cfg")
        proc = subprocess.Popen(
            ["haproxy", "-db", "-f", cfg],
            env=dict(os.environ, **env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            answer = eventually(lambda: (r := http_get(ip, public, "/")) and r[0] == 200 and r, "HAProxy → backend")
            seen = json.loads(answer[1])
            self.assertEqual(seen["host"], "forex-web", "HAProxy names the logical service")
            self.assertTrue(seen["xff"], "option forwardfor adds X-Forwarded-For")
            csv = http_get(ip, stats, "/stats;csv")
            self.assertIsNotNone(csv)
            up = [line for line in csv[1].splitlines() if line.startswith("forex-web,web") and ",UP," in line]
            self.assertTrue(up, "health-checked servers are UP")
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
            env = dict(
                os.environ,
                PATH=f"{BIN}:{os.environ['PATH']}",
                SWITCHYARD_CONFIG=os.path.join(run_dir, "forex-rate-1", "sidecar.yaml"),
                SERVICE="forex-rate",
                FOREX_LISTEN=f"{ip}:8080",
            )
            for how in ("SIGTERM to the container", "the app dies"):
                with self.subTest(how=how):
                    self.check_pod(env, ip, how)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def check_pod(self, env, ip, how):
        self.assertIsNone(http_get(ip, 4140, "/health"), f"{ip}:4140 is taken by another process")
        entry = os.path.join(REPO, "compose", "images", "with-sidecar")
        proc = subprocess.Popen([entry], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # The sidecar routes to the app: both run in this one "container".
            eventually(lambda: (r := http_get(ip, 4140, "/health", "forex-rate")) and r[0] == 200, "ingress → app")
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
