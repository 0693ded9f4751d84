#!/usr/bin/env python3
"""Latency of `nodedrift run`, end to end, on a copy of the drifted fixture host:

* file change -> CloudEvent delivered: the kubelet's config file is rewritten (readOnlyPort
  toggled 10255 <-> 0) and the time until the matching finding.opened/resolved event reaches
  a local CloudEvents receiver is measured (inotify path);
* watched file change -> file-integrity finding delivered: a file of the `kernel-tuning`
  watch set (captured at the agent's first start) is rewritten with other content and back,
  and the time until its `files.*` finding.opened/resolved event arrives is measured (inotify
  path, then stat + SHA-256 of the file, then the ledger and the sink);
* sysctl change -> CloudEvent delivered: /proc/sys/net/ipv4/ip_forward (a regular file in the
  fixture) is toggled and the time until the event arrives is measured (poll path; the bound
  is the poll interval + 100 ms).

Usage: benches/latency.py [ROUNDS=200]. Builds the release binary. Prints p50/p99/max.
"""

import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
SYSCTL_POLL_S = 1.0
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

arrivals = []  # (monotonic time, event)
cond = threading.Condition()


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        now = time.monotonic()
        events = json.loads(body)
        with cond:
            arrivals.extend((now, e) for e in events)
            cond.notify_all()
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def wait_event(kind, subject, after, timeout=30.0):
    deadline = time.monotonic() + timeout
    with cond:
        while True:
            for t, e in arrivals:
                if t >= after and e.get("type") == kind and e.get("subject") == subject:
                    return t
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind} for {subject}")
            cond.wait(left)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def report(name, xs, bound=None):
    ms = [x * 1000 for x in xs]
    line = (f"{name}: n={len(ms)} p50 {statistics.median(ms):.1f} ms, "
            f"p99 {pct(ms, 99):.1f} ms, max {max(ms):.1f} ms")
    if bound is not None:
        line += f" (bound {bound * 1000:.0f} ms)"
    print(line)


def toggle(path, a, b):
    text = open(path).read()
    new = text.replace(a, b) if a in text else text.replace(b, a)
    with open(path, "w") as f:
        f.write(new)
    return a not in new  # True when now `b`


def main():
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=REPO, check=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/events"

    work = tempfile.mkdtemp()
    host = os.path.join(work, "host")
    shutil.copytree(os.path.join(REPO, "tests/fixtures/hosts/aks-ubuntu-drifted"), host, symlinks=True)
    watched = os.path.join(host, "etc/sysctl.d/70-latency.conf")
    with open(watched, "w") as f:
        f.write("vm.max_map_count = 262144\n")
    cfg = os.path.join(work, "config.yaml")
    with open(cfg, "w") as f:
        f.write(f"hostRoot: {host}\nstateDir: {work}/state\nlisten: 127.0.0.1:0\n"
                f"intervals:\n  sysctlPoll: {int(SYSCTL_POLL_S)}s\n"
                f"endpoint:\n  url: {url}\n")
    agent = subprocess.Popen([os.path.join(REPO, "target/release/nodedrift"), "run", "--config", cfg],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_subject = "kubelet.read-only-port-disabled:kubelet.config.readOnlyPort"
        wait_event("dev.nodedrift.finding.opened", port_subject, 0.0)
        kubelet_cfg = os.path.join(host, "etc/default/kubeletconfig.json")
        file_lat = []
        for _ in range(ROUNDS):
            t0 = time.monotonic()
            fixed = toggle(kubelet_cfg, '"readOnlyPort": 10255', '"readOnlyPort": 0')
            kind = "dev.nodedrift.finding.resolved" if fixed else "dev.nodedrift.finding.opened"
            file_lat.append(wait_event(kind, port_subject, t0) - t0)
            time.sleep(0.05)
        report("file change -> CloudEvent delivered", file_lat, 0.25)

        fim_subject = "files.kernel-tuning:/etc/sysctl.d/70-latency.conf"
        fim_lat = []
        for i in range(ROUNDS):
            t0 = time.monotonic()
            changed = i % 2 == 0
            with open(watched, "w") as f:
                f.write("vm.max_map_count = 65530\n" if changed else "vm.max_map_count = 262144\n")
            kind = "dev.nodedrift.finding.opened" if changed else "dev.nodedrift.finding.resolved"
            fim_lat.append(wait_event(kind, fim_subject, t0) - t0)
            time.sleep(0.05)
        report("watched file change -> file-integrity finding delivered", fim_lat, 0.25)

        fwd = os.path.join(host, "proc/sys/net/ipv4/ip_forward")
        fwd_subject = 'sysctl.ip-forward-enabled:sysctl.runtime["net.ipv4.ip_forward"]'
        sysctl_lat = []
        for _ in range(max(20, ROUNDS // 10)):
            t0 = time.monotonic()
            with open(fwd) as f:
                was = f.read().strip()
            with open(fwd, "w") as f:
                f.write("1\n" if was == "0" else "0\n")
            kind = "dev.nodedrift.finding.resolved" if was == "0" else "dev.nodedrift.finding.opened"
            sysctl_lat.append(wait_event(kind, fwd_subject, t0) - t0)
        report("sysctl change -> CloudEvent delivered", sysctl_lat, SYSCTL_POLL_S + 0.1)
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
