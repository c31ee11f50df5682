"""Starting and stopping what the harness measures: the mock provider and the targets in
front of it (direct, nginx, LiteLLM, sluice-passthrough, sluice with governance on, and the same
sluice with its per-request metrics off).

Every process binds to 127.0.0.1 on a port picked at start, writes its log into the run
directory and is stopped by its own pid when the run ends.
"""

import os
import re
import secrets
import shutil
import signal
import subprocess
import time

import procs

HERE = os.path.dirname(os.path.abspath(__file__))


class Proc:
    """A started process, its log and how to stop it."""

    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        # Appended to: a process restarted within a run (see harness.py) keeps its first log.
        self.log = open(log_path, "ab")
        self.popen = subprocess.Popen(
            argv,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def stop(self):
        """SIGTERM the process group it leads (its own children only), then SIGKILL after 5 s."""
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout=5)
        self.log.close()


class Target:
    """One way of reaching the mock: a URL, and the process whose RSS/CPU is measured
    (None for direct)."""

    def __init__(self, name, label, port, proc=None, note="", key=None):
        self.name = name
        # The credential this target checks (sluice's virtual key, LiteLLM's master key);
        # None when it checks none. Never printed.
        self.key = key
        self.label = label
        self.port = port
        self.proc = proc
        self.note = note
        self.command = " ".join(proc.argv) if proc else ""

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"


def render(template, out_path, values):
    with open(os.path.join(HERE, "conf", template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace(f"@{k}@", v)
    with open(out_path, "w") as f:
        f.write(text)
    return out_path


def wait_listening(proc, port, seconds):
    """Waits until port accepts connections (bounded); False if the process died or time ran out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not proc.alive():
            return False
        if procs.can_connect(port):
            return True
        time.sleep(0.1)
    return False


def launch(name, argv, log_path, port, timeout, env=None):
    """Starts a process and waits (≤ timeout s) until it listens on port; returns (proc, "") or
    (None, why-not), stopping a process that never listened."""
    proc = Proc(name, argv, log_path, env=env)
    if not wait_listening(proc, port, timeout):
        proc.stop()
        return None, f"{name} did not start within {timeout} s; see {log_path}"
    return proc, ""


def start_mock(bin_dir, run_dir, name="mock"):
    port = procs.free_port()
    proc, why = launch(
        "sluice-mock",
        [f"{bin_dir}/sluice-mock", "--listen", f"127.0.0.1:{port}", "--max-records", "0"],
        os.path.join(run_dir, f"{name}.log"),
        port,
        15,
    )
    if not proc:
        raise RuntimeError(why)
    return proc, port


def start_nginx(run_dir, mock_port):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not nginx:
        return None, "nginx is not installed (apt-get install nginx failed?)"
    prefix = os.path.join(run_dir, "nginx")
    os.makedirs(prefix, exist_ok=True)
    port = procs.free_port()
    conf = render(
        "nginx.conf.in",
        os.path.join(prefix, "nginx.conf"),
        {
            "PREFIX": prefix,
            # As root nginx would switch its workers to `nobody`, who cannot write the run dir.
            "USER": "user root;" if os.geteuid() == 0 else "",
            "LISTEN": f"127.0.0.1:{port}",
            "MOCK": f"127.0.0.1:{mock_port}",
        },
    )
    proc, why = launch("nginx", [nginx, "-p", prefix, "-c", conf], os.path.join(run_dir, "nginx.log"), port, 15)
    if not proc:
        return None, why
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
    return Target("nginx", "nginx", port, proc, version), ""


def start_litellm(venv, run_dir, mock_port, key_len):
    exe = os.path.join(venv, "bin", "litellm")
    if not os.access(exe, os.X_OK):
        return None, "LiteLLM is not installed (pip install 'litellm[proxy]' failed)"
    master = "sk-" + secrets.token_hex(max(key_len, 20))[: max(key_len - 3, 17)]
    port = procs.free_port()
    conf = render(
        "litellm.yaml.in", os.path.join(run_dir, "litellm.yaml"), {"MOCK": f"127.0.0.1:{mock_port}"}
    )
    env = dict(os.environ)
    # Offline and quiet: no telemetry, no model-cost map download, warnings-only logs.
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_TELEMETRY="False",
        LITELLM_LOG="ERROR",
        NO_DOCS="True",
        # LiteLLM refuses to start without a master key; a random one of the same length as
        # sluice's virtual key keeps requests the same size. It is checked per request, as
        # sluice checks its key, but LiteLLM has no database here, so no limits or spend.
        LITELLM_MASTER_KEY=master,
    )
    proc, why = launch(
        "LiteLLM",
        [exe, "--config", conf, "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        os.path.join(run_dir, "litellm.log"),
        port,
        120,
        env=env,
    )
    if not proc:
        return None, why
    version = subprocess.run(
        [os.path.join(venv, "bin", "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return (
        Target("litellm", "LiteLLM", port, proc, f"litellm {version}, 1 uvicorn worker, master key", master),
        "",
    )


def start_passthrough(bin_dir, run_dir, mock_port, extra=()):
    port = procs.free_port()
    proc, why = launch(
        "sluice-passthrough",
        [
            f"{bin_dir}/sluice-passthrough",
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            f"127.0.0.1:{mock_port}",
            "--threads",
            "2",
            *extra,
        ],
        os.path.join(run_dir, "passthrough.log"),
        port,
        15,
    )
    if not proc:
        return None, why
    return Target("passthrough", "sluice-passthrough", port, proc, "bare Pingora 0.9, 2 threads"), ""


def upstream_line(mock_port, pool_ports=None):
    """The provider's upstream: `base_url` for one mock, `endpoints` for a pool of them."""
    if pool_ports is None:
        return f'base_url = "{mock_url(mock_port)}"'
    return "endpoints = [" + ", ".join(f'"{mock_url(p)}"' for p in pool_ports) + "]"


def mock_url(port):
    """A mock's base URL as sluice is configured with it, and as its usage records name the
    endpoint (`scheme://host/path`)."""
    return f"http://127.0.0.1:{port}/v1"


KEY_LINE = re.compile(r"^\s+(sk-\S+)\s*$", re.M)


def limits_table(url):
    """The `[limits]` table that sends every org/key limit through the Redis at url; "" (the
    default, in-process limits) when url is None."""
    if url is None:
        return ""
    return f'[limits]\nbackend = "redis"\nurl = "{url}"\n\n'


def start_sluice(bin_dir, run_dir, mock_port, name="sluice", request_metrics=True, pool_ports=None, balance=None,
                 limits_url=None):
    """sluice with governance on; returns (target, why-not). The key is never printed.

    `request_metrics=False` (target `sluice-nometrics`) writes `[metrics] requests = false` and
    changes nothing else, so the pair measures what recording the per-request series costs.
    `pool_ports` (the upstream-pool scenario, see pool.py) gives the provider one endpoint per
    mock port instead of `base_url`, and `balance` sets the model's `balance`; `limits_url`
    (the shared-limits scenario, see limits.py) adds `[limits] backend = "redis"` with that URL;
    everything else is the same config."""
    exe = f"{bin_dir}/sluice-proxy"
    out = subprocess.run([exe, "keys", "new", "--org", "bench"], capture_output=True, text=True)
    m = KEY_LINE.search(out.stdout)
    entry_at = out.stdout.find("[[keys]]")
    if out.returncode != 0 or not m or entry_at < 0:
        return None, "sluice-proxy keys new failed"
    key, entry = m.group(1), out.stdout[entry_at:]
    # Its own directory, so two sluices (metrics on and off) never share a pid file, an upgrade
    # socket or a usage file.
    prefix = os.path.join(run_dir, name)
    os.makedirs(prefix, exist_ok=True)
    port = procs.free_port()
    conf = render(
        "sluice.toml.in",
        os.path.join(prefix, "sluice.toml"),
        {
            "PREFIX": prefix,
            "LISTEN": f"127.0.0.1:{port}",
            "UPSTREAM": upstream_line(mock_port, pool_ports),
            "BALANCE": f'balance = "{balance}"\n' if balance else "",
            "LIMITS": limits_table(limits_url),
            "USAGE": os.path.join(prefix, "usage.jsonl"),
            "REQUEST_METRICS": "true" if request_metrics else "false",
            "KEY_ENTRY": entry,
        },
    )
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    proc, why = launch("sluice-proxy", [exe, "--config", conf], os.path.join(run_dir, f"{name}.log"), port, 20, env=env)
    if not proc:
        return None, why
    if request_metrics:
        return Target(name, "sluice (governance on)", port, proc, "2 threads, auth + limits + metering to a file", key), ""
    note = "as sluice, with `[metrics] requests = false` (no per-request series)"
    return Target(name, "sluice, per-request metrics off", port, proc, note, key), ""
