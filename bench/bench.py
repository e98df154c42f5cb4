#!/usr/bin/env python3
"""Benchmark `bulkgen run` against the built-in simulator (`bulkgen sim`), loopback only.

Every run gets a fresh simulator and a fresh temporary output folder (deleted afterwards);
each scenario is repeated --repeats times and reported as median and min-max.

1. Throughput  time scale 0 (the sim answers at once), ~50 KB images, 64 in flight, 5,000 rows.
               rows/s = rows / wall time of the `bulkgen run` process (start to exit), and
               CPU s per 1,000 rows = user+sys of that process (os.wait4 rusage).
               The simulator's own CPU time (from /proc/PID/stat) is shown for comparison:
               both share the machine, so a busy sim can be the bottleneck.
2. Memory      time scale 0, ~50 KB images, 256 in flight, 10,000 rows: peak RSS
               (ru_maxrss of the bulkgen process) in MB.
3. Fidelity    time scale 0.002 (a 45 s 1K call takes ~90 ms, a 120 s 4K call ~240 ms),
               a 1K/2K/4K mix, 2,000 rows, 32 in flight, no rate cap. How close does the
               scheduler come to the best possible wall time?
                   ideal = max(sum(duration_s of successful generate attempts) / concurrency,
                               longest single call)
               read from the attempts table of OUTDIR/bulkgen.db; ratio = wall / ideal.
               The first term is what perfectly packed slots would need, the second is the
               floor set by the slowest call. Process start-up and the drain at the end
               (fewer than `concurrency` calls left) count against bulkgen.
               For diagnosis the table also shows wall / replay, where replay is the makespan
               of the same calls, in the order they started, on `concurrency` slots with zero
               gap between calls: the best any FIFO dispatcher could do without knowing the
               latencies in advance. The ideal/replay gap is the unavoidable drain; the
               replay/wall gap is bulkgen's own overhead (start-up, slot refill, exit).

Output folders go to --tmpdir (default: the system temp dir); its filesystem matters, since
bulkgen fsyncs every image (compare ext4 with tmpfs, e.g. --tmpdir /dev/shm).

--rows scales all row counts; --quick runs every scenario with small counts as a smoke test.
"""
import argparse, csv, heapq, os, platform, shutil, signal, sqlite3, statistics
import subprocess, sys, tempfile, time, urllib.request, json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "bulkgen")
CLK = os.sysconf("SC_CLK_TCK")
# Loopback only: make sure no proxy setting reroutes the child processes' traffic.
ENV = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
ENV["BULKGEN_API_KEY"] = "bench-key"
for k in [k for k in ENV if k.startswith("BULKGEN_") and k != "BULKGEN_API_KEY"]:
    del ENV[k]  # a stray BULKGEN_RPM etc. would skew the runs


def sh(*cmd):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True).stdout.strip()


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                  if l.startswith("model name")), platform.processor() or "?")
    commit = sh("git", "rev-parse", "--short", "HEAD") or "?"
    if sh("git", "status", "--porcelain", "--untracked-files=no"):
        commit += " (+ uncommitted changes in the working tree)"
    built = os.path.getmtime(BIN)
    newest = max(os.path.getmtime(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(ROOT, "src"))
                 for f in fs)
    stale = "; SOURCES CHANGED SINCE (use --build)" if newest > built else ""
    return (f"machine: {os.cpu_count()} CPUs (nproc {sh('nproc')}), {model}\nbulkgen: {commit}; "
            f"binary built {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(built))}{stale}")


def fs_type(path):
    path, best = os.path.realpath(path), ("", "?")
    for line in open("/proc/mounts"):
        _, mnt, typ = line.split()[:3]
        if (path + "/").startswith(mnt.rstrip("/") + "/") and len(mnt) >= len(best[0]):
            best = (mnt, typ)
    return best[1]


def replay(durations, conc):
    """Makespan of the calls, in start order, on `conc` slots with no gap between calls."""
    slots = [0.0] * conc
    for d in durations:
        heapq.heapreplace(slots, slots[0] + d)
    return max(slots)


def write_manifest(path, rows, sizes):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt", "size"])
        for i in range(rows):
            w.writerow([f"r{i:06d}", f"bench prompt {i}: a lighthouse at dusk, variant {i}",
                        sizes[i % len(sizes)]])


class Sim:
    """`bulkgen sim` on 127.0.0.1:0; stopped with SIGINT on exit. `extra` adds sim flags
    (e.g. ["--latency", "30s"]); `preexec_fn` runs in the child before exec (scale.py
    raises the fd limit there)."""

    def __init__(self, tmp, scale, image_bytes, seed, extra=(), preexec_fn=None, log_name="sim.out",
                 bin=None, env=None, stats_timeout=10):
        self.log = open(os.path.join(tmp, log_name), "w+")
        self.stats_timeout = stats_timeout
        self.p = subprocess.Popen([bin or BIN, "sim", "--listen", "127.0.0.1:0", "--time-scale", str(scale),
                                   "--image-bytes", str(image_bytes), "--seed", str(seed), *extra],
                                  stdout=self.log, stderr=subprocess.STDOUT, env=env or ENV, preexec_fn=preexec_fn)
        deadline = time.time() + 15
        while time.time() < deadline:
            self.log.seek(0)
            first = self.log.readline()
            if "listening on " in first:
                self.url = first.split("listening on ", 1)[1].strip()
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"sim did not start: {open(self.log.name).read()!r}")

    def cpu_s(self):
        fields = open(f"/proc/{self.p.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK  # utime, stime

    def stats(self):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        return json.load(opener.open(self.url + "/_sim/stats", timeout=self.stats_timeout))

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


TO_DELETE = []


def one_run(rows, conc, scale, sizes, image_bytes, seed, tmpdir=None):
    """One bulkgen run against a fresh sim in a fresh temp dir; returns a dict of figures."""
    tmp = tempfile.mkdtemp(prefix="bulkgen-bench-", dir=tmpdir)
    sim = None
    try:
        manifest, out = os.path.join(tmp, "manifest.csv"), os.path.join(tmp, "out")
        write_manifest(manifest, rows, sizes)
        sim = Sim(tmp, scale, image_bytes, seed)
        cmd = [BIN, "run", manifest, "--base-url", sim.url, "-o", out, "-c", str(conc),
               "--rpm", "0", "--quiet", "--seed", str(seed)]
        with open(os.path.join(tmp, "run.err"), "w+") as err:
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=ENV)
            try:
                _, status, ru = os.wait4(p.pid, 0)
            except BaseException:
                p.kill(); p.wait(); raise
            wall = time.perf_counter() - t0
            p.returncode = os.waitstatus_to_exitcode(status)
            err.seek(0)
            if p.returncode != 0:
                raise RuntimeError(f"bulkgen run exited {p.returncode}: {err.read()[-2000:]}")
        sim_cpu, sim_stats = sim.cpu_s(), sim.stats()
        with open(os.path.join(out, "results.csv"), newline="") as f:
            done = sum(r["status"] == "done" for r in csv.DictReader(f))
        if done != rows:
            raise RuntimeError(f"only {done} of {rows} rows done")
        db = sqlite3.connect(os.path.join(out, "bulkgen.db"))
        durations = [d for (d,) in db.execute(
            "SELECT duration_s FROM attempts WHERE kind = 'generate' AND outcome = 'ok' "
            "ORDER BY started_at")]
        db.close()
        n, shortest, longest = len(durations), min(durations), max(durations)
        ideal = max(sum(durations) / conc, longest)
        return dict(wall=wall, rps=rows / wall, cpu_k=(ru.ru_utime + ru.ru_stime) / rows * 1000,
                    sim_cpu_k=sim_cpu / rows * 1000, rss_mb=ru.ru_maxrss / 1024,
                    ideal=ideal, ratio=wall / ideal, replay_ratio=wall / replay(durations, conc), lat_min=shortest, lat_max=longest,
                    sim_max_in_flight=sim_stats.get("max_in_flight"), calls=n)
    finally:
        if sim:
            sim.stop()
        # Folders are deleted only at the very end: deleting thousands of files right
        # before the next run makes ext4 hunt for free inodes (recently_deleted) during it.
        TO_DELETE.append(tmp)
        os.sync()


def fmt(v, unit):
    return f"{v:,.0f}" if unit in ("rows/s",) else f"{v:.3f}" if abs(v) < 10 else f"{v:,.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=None, help="runs per scenario (default 3; 1 with --quick)")
    ap.add_argument("--rows", type=float, default=1.0, metavar="SCALE",
                    help="multiply every scenario's row count by SCALE (default 1: 5,000 / 10,000 / 2,000)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1/20 of the rows, 1 repeat")
    ap.add_argument("--fidelity-time-scale", type=float, default=0.002, help="sim --time-scale of scenario 3")
    ap.add_argument("--image-bytes", type=int, default=50000, help="PNG size served by the sim (default 50000)")
    ap.add_argument("--seed", type=int, default=1, help="sim and bulkgen seed (default 1)")
    ap.add_argument("--tmpdir", default=None, help="where the per-run output folders go (default: system temp)")
    ap.add_argument("--build", action="store_true", help="run `cargo build --release` even if the binary exists")
    a = ap.parse_args()
    scale = a.rows * (0.05 if a.quick else 1.0)
    repeats = a.repeats or (1 if a.quick else 3)
    rows = lambda n: max(10, round(n * scale))

    if a.build or not os.path.exists(BIN):
        print("building: cargo build --release", flush=True)
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    print(machine())
    tmpdir = a.tmpdir or tempfile.gettempdir()
    print(f"output folders in: {tmpdir} ({fs_type(tmpdir)}); load average before: "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])} (other work skews the figures)")
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}; repeats {repeats}\n", flush=True)

    # name, rows, concurrency, time scale, sizes
    scenarios = [("throughput", rows(5000), 64, 0, ["1K"]),
                 ("memory", rows(10000), 256, 0, ["1K"]),
                 ("fidelity", rows(2000), 32, a.fidelity_time_scale, ["1K", "2K", "4K"])]
    res = {}
    for name, n, conc, ts, sizes in scenarios:
        runs = []
        for i in range(repeats):
            r = one_run(n, conc, ts, sizes, a.image_bytes, a.seed + i, a.tmpdir)
            runs.append(r)
            print(f"  {name} run {i + 1}/{repeats}: {n} rows, -c {conc}, time scale {ts}: "
                  f"wall {r['wall']:.2f}s, {r['rps']:,.0f} rows/s, RSS {r['rss_mb']:.1f} MB, "
                  + (f"wall/ideal {r['ratio']:.3f}, " if ts else "")
                  + f"sim max in flight {r['sim_max_in_flight']}", flush=True)
        res[name] = (n, conc, runs)

    # metric rows: scenario label, metric, key, unit, target (op, value) or None
    table = [("throughput", "rows/s end to end", "rps", "rows/s", (">=", 1000)),
             ("throughput", "bulkgen CPU s / 1,000 rows", "cpu_k", "s", None),
             ("throughput", "sim CPU s / 1,000 rows", "sim_cpu_k", "s", None),
             ("memory", "peak RSS", "rss_mb", "MB", ("<", 100)),
             ("memory", "rows/s end to end", "rps", "rows/s", None),
             ("fidelity", "wall / ideal", "ratio", "", ("<=", 1.05)),
             ("fidelity", "wall / replay (see --help)", "replay_ratio", "", None),
             ("fidelity", "wall time", "wall", "s", None),
             ("fidelity", "ideal bound", "ideal", "s", None),
             ("fidelity", "shortest call", "lat_min", "s", None),
             ("fidelity", "longest call", "lat_max", "s", None)]
    ops = {">=": lambda x, y: x >= y, "<": lambda x, y: x < y, "<=": lambda x, y: x <= y}
    out = [("scenario", "metric", "median", "min-max", "unit", "target", "ok")]
    for name, metric, key, unit, target in table:
        n, conc, runs = res[name]
        vals = [r[key] for r in runs]
        med = statistics.median(vals)
        ok = "" if target is None else ("yes" if ops[target[0]](med, target[1]) else "NO")
        out.append((f"{name} ({n:,} rows, -c {conc})", metric, fmt(med, unit),
                    f"{fmt(min(vals), unit)}-{fmt(max(vals), unit)}", unit,
                    "" if target is None else f"{target[0]} {target[1]:g}", ok))
    widths = [max(len(r[i]) for r in out) for i in range(len(out[0]))]
    print()
    for j, r in enumerate(out):
        print("  ".join(c.rjust(w) if 2 <= i <= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    return 0 if all(r[6] != "NO" for r in out[1:]) else 1


if __name__ == "__main__":
    try:
        code = main()
    finally:
        for folder in TO_DELETE:
            shutil.rmtree(folder, ignore_errors=True)
    sys.exit(code)
