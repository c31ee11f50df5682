"""What the harness reads from /proc: a process tree's RSS and CPU time, established TCP
connections to a port, the load average, and free loopback ports.

A target may be several processes (nginx's master and workers, LiteLLM's uvicorn), so
memory and CPU are summed over the target's whole process tree.
"""

import os
import socket

CLK_TCK = os.sysconf("SC_CLK_TCK")


def children(pid):
    """Direct children of pid (from /proc/PID/task/*/children)."""
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    kids.extend(int(k) for k in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return kids


def tree(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def rss_kib(pid):
    """Sum of VmRSS (KiB) over pid's process tree."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def cpu_seconds(pid):
    """Sum of utime + stime (seconds) over pid's process tree. Threads are included in a
    process's own counters; children that already exited are not (targets never fork per
    request)."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
            # The command name may hold spaces; fields after it are space-separated.
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total / CLK_TCK


def established_to(port):
    """Established IPv4 TCP connections whose remote port is `port`."""
    n = 0
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[3] == "01" and int(parts[2].rsplit(":", 1)[1], 16) == port:
                    n += 1
    except OSError:
        pass
    return n


def loadavg():
    return os.getloadavg()


def free_port():
    """A loopback port that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_connect(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
