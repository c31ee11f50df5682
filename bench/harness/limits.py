"""The shared-limits scenario: sluice whose org limits go through Redis against the same sluice
with in-process limits, in the same run.

One mock and a throwaway `redis-server` (a free loopback port, its own temporary directory, no
persistence: `--save "" --appendonly no`) start for the scenario and stop at its end. Target
`limits-local` is sluice with the harness's usual config: the bench org's request, token and
concurrency limits (far above the load, so nothing is refused) are admitted in-process. Target
`limits-redis` is the same config plus `[limits] backend = "redis"` with that server's URL, so
the same limits are admitted through Redis leases. Each round runs an open loop at one fixed
rate (`--limits-rate`, the open-scenario arguments of harness.py) and then the closed loop of
the main scenarios, on both targets in turn (local, redis; redis, local in the next round). For
every run the harness reads sluice's CPU time (run_load), Redis's CPU time and the commands
Redis processed (its `INFO stats`); the Redis numbers are recorded for the redis target only,
whose runs are the only ones that send it work. At the end both sluices get SIGTERM and their
exit status (and any panic in their log) is recorded. No timing is asserted anywhere.
"""

import os
import shlex
import shutil
import socket
import tempfile

import procs
import targets as tg

DEFAULT_RATE = 2000.0
TARGETS = ("limits-local", "limits-redis")


def redis_binary():
    return shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)


def start_redis(run_dir, data_dir, tries=5):
    """A throwaway redis-server on a free loopback port; (proc, port) or (None, why-not). A port
    found free can be taken before Redis binds it, hence a few tries."""
    exe = redis_binary()
    if not exe:
        return None, "redis-server is not installed (.ci/deps.sh installs it)"
    why = ""
    for _ in range(tries):
        port = procs.free_port()
        argv = [exe, "--bind", "127.0.0.1", "--port", str(port), "--dir", data_dir,
                "--save", "", "--appendonly", "no"]
        proc, why = tg.launch("redis-server", argv, os.path.join(run_dir, "limits-redis-server.log"), port, 15)
        if proc:
            return proc, port
    return None, why


def redis_commands(port):
    """`total_commands_processed` from the server's INFO stats, or None if it cannot be read.
    The INFO call itself counts as one command; over runs of thousands of requests that is
    noise, and it is the same one command in every run."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"INFO stats\r\n")
            buf = b""
            # A bulk string: `$LEN\r\n` then LEN bytes and `\r\n`.
            while b"\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    return None
                buf += chunk
            header, rest = buf.split(b"\r\n", 1)
            if not header.startswith(b"$"):
                return None
            need = int(header[1:]) + 2
            while len(rest) < need:
                chunk = s.recv(65536)
                if not chunk:
                    return None
                rest += chunk
    except (OSError, ValueError):
        return None
    for line in rest.decode("utf-8", "replace").splitlines():
        if line.startswith("total_commands_processed:"):
            return int(line.split(":", 1)[1])
    return None


def exit_of(proc):
    """How a stopped process ended: its exit status (negative: killed by that signal) and the
    first panic its log shows ("" if none)."""
    panic = ""
    try:
        with open(proc.log_path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        for i, line in enumerate(lines):
            if "panicked at" in line:
                where = line.split("panicked at", 1)[1].strip().rstrip(":")
                panic = f"{where}: {lines[i + 1].strip()}" if i + 1 < len(lines) else where
                break
    except OSError:
        pass
    return dict(returncode=proc.popen.returncode, panic=panic)


def open_args(rate, duration):
    """The open-loop arguments of harness.py's open scenario, at one rate."""
    return ["--rate", str(rate), "--duration", duration, "--max-outstanding", "1024", "--timeout", "5s"]


def run(bench, args, run_dir, prof, closed_extra, log):
    """Runs the scenario; returns its description for results.json (the runs themselves go to
    bench.runs as scenarios "limits-open" and "limits-closed", targets "limits-local" and
    "limits-redis"), or {"skipped": why} if it could not start (the reason is logged)."""
    started = []
    data_dir = tempfile.mkdtemp(prefix="sluice-bench-redis-")
    try:
        try:
            mock, mock_port = tg.start_mock(args.bin, run_dir, name="limits-mock")
        except RuntimeError as e:
            log(f"shared limits skipped: {e}")
            return dict(skipped=str(e))
        started.append(mock)
        redis, port_or_why = start_redis(run_dir, data_dir)
        if not redis:
            log(f"shared limits skipped: {port_or_why}")
            return dict(skipped=port_or_why)
        started.append(redis)
        redis_port = port_or_why
        url = f"redis://127.0.0.1:{redis_port}"
        local, why_l = tg.start_sluice(args.bin, run_dir, mock_port, name="limits-local")
        if local:
            started.append(local.proc)
        shared, why_r = tg.start_sluice(args.bin, run_dir, mock_port, name="limits-redis", limits_url=url)
        if shared:
            started.append(shared.proc)
        if not local or not shared:
            why = why_l or why_r
            log(f"shared limits skipped: {why}")
            return dict(skipped=why)
        local.label, local.note = "sluice, local limits", "no `[limits]` table (in-process limits), otherwise as target sluice"
        shared.label = "sluice, Redis limits"
        shared.note = f'`[limits] backend = "redis"`, `url = "{url}"`, otherwise as target sluice'
        before = redis_commands(redis_port)
        for t in (local, shared):
            if not bench.warm_up(t):
                why = f"{t.name} failed its warm-up (see its log)"
                log(f"shared limits skipped: {why}")
                return dict(skipped=why)
        after = redis_commands(redis_port)
        warm_cmds = after - before if after is not None and before is not None else None
        if not warm_cmds or warm_cmds < 2:
            # Only our own INFO calls: sluice never reached Redis, so the comparison would be
            # two local sluices. Say so rather than report it as a Redis measurement.
            why = f"limits-redis sent no commands to Redis during its warm-up ({warm_cmds}); see limits-redis.log"
            log(f"shared limits skipped: {why}")
            return dict(skipped=why)
        log(f"shared limits: Redis at {url} processed {warm_cmds} commands during the warm-ups")
        rate = args.limits_rate
        dur = prof["duration"]
        for rnd in range(prof["rounds"]):
            order = (local, shared) if rnd % 2 == 0 else (shared, local)
            for scenario, extra, param in (("limits-open", open_args(rate, dur), rate), ("limits-closed", closed_extra, None)):
                for t in order:
                    cpu0, cmds0 = procs.cpu_seconds(redis.pid), redis_commands(redis_port)
                    r = bench.run_load(t, scenario, extra, rnd, param=param)
                    if r is None or t is not shared:
                        continue
                    # Read after run_load has waited for sluice to go idle, so lease returns
                    # and refills the run caused are counted with it.
                    r["redis_cpu_s"] = procs.cpu_seconds(redis.pid) - cpu0
                    cmds1 = redis_commands(redis_port)
                    if cmds0 is not None and cmds1 is not None:
                        r["redis_commands"] = cmds1 - cmds0
        # Stopped here (SIGTERM, as an orchestrator would) so how each one exited is recorded:
        # the Redis backend returns its unused leases at shutdown, on a path the load never runs.
        shutdown = {}
        for t in (local, shared):
            t.proc.stop()
            shutdown[t.name] = exit_of(t.proc)
            if shutdown[t.name]["returncode"] != 0 or shutdown[t.name]["panic"]:
                log(f"shared limits: {t.name} exited {shutdown[t.name]['returncode']} on SIGTERM: {shutdown[t.name]['panic']}")
        version = ""
        with open(redis.log_path, "rb") as f:
            for line in f.read().decode("utf-8", "replace").splitlines():
                if "Redis version=" in line:
                    version = "Redis " + line.split("Redis version=", 1)[1].split(",", 1)[0]
                    break
        return dict(
            rate=rate, redis_url=url, redis_command=shlex.join(redis.argv), redis_version=version,
            warmup_redis_commands=warm_cmds, shutdown=shutdown,
            targets=[dict(name=t.name, label=t.label, command=t.command, note=t.note) for t in (local, shared)],
            mock_command=" ".join(mock.argv),
        )
    finally:
        for p in reversed(started):
            p.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
