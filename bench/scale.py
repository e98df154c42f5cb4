#!/usr/bin/env python3
"""Scale benchmarks of `bulkgen run` (issue 5) against the built-in simulator, loopback only.

    python3 bench/scale.py                 # everything, --repeats 3 (see --help for the knobs)
    python3 bench/scale.py --quick         # smoke run: small counts, 1 repeat
    python3 bench/scale.py --only 2b,5     # some scenarios only
    python3 bench/scale.py --only 2c       # 2c is never in the default set (it takes ~75 s a run)

Every run gets a fresh `bulkgen sim --listen 127.0.0.1:0` and a fresh temporary folder; each
scenario is repeated --repeats times and reported as median and min-max. Wall time is that of
the `bulkgen run` process (start to exit); CPU = user + sys of that process (os.wait4
rusage); the simulator's CPU is read from /proc/PID/stat. Both share the machine, so a busy
sim can be the bottleneck: its CPU is shown where it matters. Peak RSS is the child's
ru_maxrss when that is above this script's own peak, else its VmHWM polled every 10 ms:
Linux carries the parent's peak RSS into a child's ru_maxrss across fork and exec (see
run_proc); each run line says which source was used (rss_src).

1  Overhead      time scale 0 (the sim answers at once), ~50 KB images, 20,000 rows, at -c 64
                 and at -c 512. rows/s = rows / wall; CPU s per 1,000 rows (bulkgen only);
                 peak RSS. Targets: >= 2,000 rows/s at 64; CPU < 0.5 s per 1,000 rows.
2a Fidelity,     time scale 0.008 (the fitted 45-250 s latencies become ~0.3-2 s calls), a
   latency-bound 1K/2K/4K mix, 2,000 rows, -c 100, no rate cap.
                     ideal = max(sum(duration_s of successful generate attempts) / concurrency,
                                 longest single call)
                 from the attempts table of OUT/bulkgen.db; target wall / ideal <= 1.03.
                 wall / replay is shown for diagnosis (replay = makespan of the same calls in
                 start order on `concurrency` slots with no gap: the best a FIFO dispatcher can
                 do; replay/ideal is the drain FIFO cannot avoid, wall/replay bulkgen's own
                 cost). "replay 4K, 2K, then 1K" replays the same calls with the slow classes
                 first: what a class-aware dispatch order could reach. "random order" is the
                 median (and 10th percentile) over 200 shuffles of the same calls: what a
                 dispatcher that cannot know a call's duration before it ends can expect.
                 "longest first" knows every duration in advance (LPT): out of reach, shown
                 to separate the drain from the bound.
2b Fidelity,     --rpm 6000, time scale 0, 1,000 rows, -c 64. From the sim's arrival times
   rate-bound    (/_sim/stats `arrivals`): achieved starts/min = (n-1) / (last-first) * 60,
                 target >= 0.98 x 6000. The cap (product.md: "most request starts in any
                 60 s window") is checked on bulkgen's own start times (attempts.started_at,
                 taken when the gate admits a call) and on the sim's arrivals, in sliding
                 half-open 60 s windows (target <= 6000). --rate-rows 7000 makes the run last
                 longer than a window, so that this check is not simply n. 1 s windows are
                 shown without a target, as they are not the contract: the limiter spaces
                 starts 60.1/5999 s apart with a burst of 2 (so a late wakeup is made up),
                 which allows 2 + 99 = 101 starts in a 1 s window; started_at is read a few
                 us after the admission and loopback delivery moves arrivals by a few ms,
                 which can add one more.
2c Rate-bound    (not in the default set: a run lasts ~75 s; --only 2c) --rpm 3000, time scale
   with a slow   0, 3,600 rows (--rate-rows overrides it, as for 2b), -c 64, with bulkgen
   checkpoint    started with BULKGEN_TEST_SLOW_COMMIT_MS=165 (fault injection, in main since
                 e1fbd70: every checkpoint commit takes 165 ms longer, as on a slow or busy
                 disk). A row's call starts only after its `running` mark is committed, so
                 slow commits must neither push a 60 s window over the cap nor let the calls
                 a slow commit held back leave together. At 3,000/min the starts are 72 s
                 of rate-bound work, so the busiest 60 s window is a real check (target
                 <= 3000), on the sim's arrivals and on the checkpoint's started_at as in 2b.
                 Shown without targets: achieved starts/min (slow commits may cost rate),
                 the busiest 1 s window (the limiter allows 2 + 49 = 51: period 60.1/2999 s,
                 burst 2) and the most arrivals within 10 ms (bunching; the limiter lets 2
                 through in under one 20 ms period, loopback delivery may add one).
3  Large         4K rows, ~6 MB PNGs (--image-bytes 6000000: ~8 MB of base64 per response),
   payloads      time scale 0, -c 32, 200 rows: peak RSS (target < 32 x 2 x 8 MB + 64 MB =
                 576 MB) and rows/s (also MB/s of PNG written).
4  Checkpoint    (i) a 1,000,000-row manifest (short prompts, 1K), `bulkgen run --dry-run`:
   scale         wall and peak RSS (validates and reads the manifest, sends nothing; the
                 --base-url points at a port where nothing listens).
                 (ii) 100,000 rows fully run: time scale 0, --image-bytes 100, -c 256: wall,
                 rows/s, peak RSS, checkpoint size (bulkgen.db + -wal + -shm after exit).
                 (iii) the same command again, every row done, against a fresh sim: time to
                 start and finish the resume, its peak RSS, requests the sim saw (target:
                 wall < 10 s, 0 requests, exit 0).
                 --resume-1m also builds the 1,000,000-row "all done" state (one full run, not
                 repeated; skipped if it would take longer than --resume-1m-limit seconds,
                 estimated from (ii)) and times its resume the same way.
5  Many in       5,000 rows, -c 5000, --rpm 0; sim --latency 30s --time-scale 0.1 (every call
   flight        takes 3 s real), ~50 KB images. The run must complete (exit 0, all rows done);
                 peak RSS; the time from the first to the last request reaching the sim;
                 VmRSS of bulkgen sampled while all 5,000 calls wait (the sim has seen 5,000
                 in flight and answered none); per call, relative to the peak RSS of a 50-row,
                 -c 50 run on the same settings:
                     per waiting call   = (RSS while all wait - reference) / (5,000 - 50)
                     per in-flight call = (peak RSS - reference) / (most in flight at the sim - 50)
                 (the peak comes when the answers, ~67 KB of base64 each, arrive together).
                 Both processes start with a soft RLIMIT_NOFILE of 1,024 (a common default;
                 --start-nofile) and raise it themselves, as every bulkgen run and sim does;
                 the limits read back from /proc/PID/limits while all calls wait are printed
                 (the hard limit is this machine's; a hard limit below what -c needs makes
                 bulkgen stop with exit 2 before any call).
6  Baseline      bench/baseline.py (ThreadPoolExecutor + requests, no checkpoint, no fsync,
                 no retries) and bulkgen on the same sim: time scale 0, ~50 KB images, 5,000
                 rows, concurrency 64. rows/s, CPU s, peak RSS for each, and the ratios
                 bulkgen / baseline. The two alternate within a repeat.

Output folders go to --tmpdir (default: the system temp dir) and are all deleted at the very
end, not between runs (deleting thousands of files right before the next run makes ext4 hunt
for free inodes during it; see bench.py). The exit code is 1 if a target is missed or a run
failed.
"""
import argparse, csv, json, os, random, resource, sqlite3, statistics, subprocess, sys, tempfile, threading, time
import traceback, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (helpers: machine(), fs_type(), Sim, replay(), ENV, BIN, TO_DELETE)
from bench import BIN, ENV, ROOT, Sim, TO_DELETE, fs_type, machine, replay  # noqa: E402

BASELINE = os.path.join(ROOT, "bench", "baseline.py")
DEAD_URL = "http://127.0.0.1:9"  # the discard port: nothing listens there


# ---------------------------------------------------------------------------------------
# helpers


def mkdtemp(a, what):
    tmp = tempfile.mkdtemp(prefix=f"bulkgen-scale-{what}-", dir=a.tmpdir)
    TO_DELETE.append(tmp)
    return tmp


def write_manifest(path, rows, sizes, short=False):
    """id,prompt,size; `short` prompts for the million-row manifests (written in chunks)."""
    with open(path, "w", newline="") as f:
        f.write("id,prompt,size\n")
        step = 50_000
        for lo in range(0, rows, step):
            if short:
                f.write("".join(f"r{i:07d},p {i},{sizes[i % len(sizes)]}\n" for i in range(lo, min(rows, lo + step))))
            else:
                f.write("".join(f"r{i:07d},bench prompt {i}: a lighthouse at dusk variant {i},"
                                f"{sizes[i % len(sizes)]}\n" for i in range(lo, min(rows, lo + step))))


def nofile_limit(pid):
    try:
        for line in open(f"/proc/{pid}/limits"):
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return f"{soft}/{hard}"
    except OSError:
        pass
    return "?"


def soft_limit(soft):
    """preexec_fn: start the child with RLIMIT_NOFILE's soft limit at `soft` (hard unchanged)."""
    def lower():
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard), hard))
    return lower


def hwm_kb(pid="self"):
    """VmHWM (peak RSS of the current program image) of a process, in KB; None once gone."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def run_proc(cmd, tmp, name, preexec_fn=None, on_start=None, env=None):
    """Runs `cmd`, stdout and stderr to files in tmp; returns dict(wall, cpu, rss_mb, rc, err, out).

    Peak RSS: Linux carries a process's peak RSS across fork and exec into ru_maxrss, so the
    ru_maxrss that os.wait4 reports for a child is at least this Python process's own peak
    (VmHWM) when it forked (a child that never used more than 5 MB shows, say, 60 MB after
    we parsed a big /_sim/stats). So: if ru_maxrss is above our own peak it is the child's
    true peak; otherwise the child's VmHWM, polled every 10 ms from /proc while it runs, is
    used (it can miss growth in the last 10 ms before exit; rss_src says which was used).
    `env` adds variables to bench.ENV for this child (fault injection, scenario 2c)."""
    with open(os.path.join(tmp, name + ".out"), "w+") as out, open(os.path.join(tmp, name + ".err"), "w+") as err:
        floor_kb = hwm_kb()
        peak = [0]
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env={**ENV, **(env or {})}, preexec_fn=preexec_fn)
        done = threading.Event()

        def poll():
            while not done.is_set():
                v = hwm_kb(p.pid)
                if v is None:
                    return
                peak[0] = max(peak[0], v)
                done.wait(0.01)
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        info = on_start(p.pid) if on_start else None
        try:
            _, status, ru = os.wait4(p.pid, 0)
        except BaseException:
            p.kill(); p.wait(); raise
        finally:
            done.set()
        wall = time.perf_counter() - t0
        poller.join()
        p.returncode = os.waitstatus_to_exitcode(status)
        exact = ru.ru_maxrss > floor_kb
        err.seek(0); out.seek(0)
        return dict(wall=wall, cpu=ru.ru_utime + ru.ru_stime, rss_mb=(ru.ru_maxrss if exact else peak[0]) / 1024,
                    rss_src="ru_maxrss" if exact else "polled", rc=p.returncode,
                    err=err.read()[-3000:], out=out.read()[-3000:], info=info)


def bulkgen_cmd(manifest, url, out, conc, seed, rpm=0, extra=()):
    return [BIN, "run", manifest, "--base-url", url, "-o", out, "-c", str(conc), "--rpm", str(rpm),
            "--quiet", "--seed", str(seed), *extra]


def check_ok(r, what):
    if r["rc"] != 0:
        raise RuntimeError(f"{what} exited {r['rc']}: {r['err'][-1500:]}")


def done_rows(out):
    with open(os.path.join(out, "results.csv"), newline="") as f:
        return sum(r["status"] == "done" for r in csv.DictReader(f))


def ok_durations(out, with_resolution=False):
    """duration_s of the successful generate attempts in start order (and their classes)."""
    db = sqlite3.connect(os.path.join(out, "bulkgen.db"))
    try:
        rows = db.execute("SELECT duration_s, resolution FROM attempts WHERE kind = 'generate' "
                          "AND outcome = 'ok' ORDER BY started_at").fetchall()
    finally:
        db.close()
    d = [x for x, _ in rows]
    return (d, [c for _, c in rows]) if with_resolution else d


def start_times(out):
    """started_at of every generate attempt (taken when the gate admits the call), sorted."""
    db = sqlite3.connect(os.path.join(out, "bulkgen.db"))
    try:
        return [t for (t,) in db.execute("SELECT started_at FROM attempts WHERE kind = 'generate' "
                                         "ORDER BY started_at")]
    finally:
        db.close()


def ckpt_mb(out):
    return sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)
               if f.startswith("bulkgen.db")) / 1e6


def sim_stats(sim, timeout=120):
    """/_sim/stats (bench.Sim.stats has a 10 s timeout: too short for a million rows)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return json.load(opener.open(sim.url + "/_sim/stats", timeout=timeout))


def arrivals_s(stats):
    return sorted(a["secs"] + a["nanos"] / 1e9 for a in stats["arrivals"])


def max_in_window(ts, window):
    """Most arrivals in any half-open window [t, t + window)."""
    best, lo = 0, 0
    for hi, t in enumerate(ts):
        while t - ts[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def with_sim(tmp, scale, image_bytes, seed, fn, extra=(), preexec_fn=None, log_name="sim.out"):
    sim = Sim(tmp, scale, image_bytes, seed, extra=extra, preexec_fn=preexec_fn, log_name=log_name)
    try:
        return fn(sim)
    finally:
        sim.stop()


# ---------------------------------------------------------------------------------------
# scenarios: each returns one repeat's figures as a dict


def one_batch(a, what, n, sizes, conc, seed, scale, image_bytes, figures, rpm=0, env=None):
    """A fresh folder with an `n`-row manifest (sizes in turn), one `bulkgen run` against a
    fresh sim; `figures(r, sim, out)` turns the finished run into the scenario's dict."""
    tmp = mkdtemp(a, what)
    manifest, out = os.path.join(tmp, "manifest.csv"), os.path.join(tmp, "out")
    write_manifest(manifest, n, sizes)

    def go(sim):
        r = run_proc(bulkgen_cmd(manifest, sim.url, out, conc, seed, rpm=rpm), tmp, "run", env=env)
        check_ok(r, "bulkgen run")
        return figures(r, sim, out)
    return with_sim(tmp, scale, image_bytes, seed, go)


def s_overhead(a, n, conc, seed):
    def figures(r, sim, out):
        st = sim_stats(sim)
        return dict(rps=n / r["wall"], cpu_k=r["cpu"] / n * 1000, rss_mb=r["rss_mb"], rss_src=r["rss_src"], wall=r["wall"],
                    sim_cpu_k=sim.cpu_s() / n * 1000, sim_inflight=st["max_in_flight"], done=done_rows(out))
    return one_batch(a, "overhead", n, ["1K"], conc, seed, 0, a.image_bytes, figures)


def s_latency(a, n, conc, seed):
    def figures(r, sim, out):
        st = sim_stats(sim)
        d, res = ok_durations(out, with_resolution=True)
        ideal = max(sum(d) / conc, max(d))
        rp = replay(d, conc)
        rank = {"4K": 0, "2K": 1, "1K": 2}
        by_class = [x for _, _, x in sorted((rank.get(c, 3), i, x) for i, (x, c) in enumerate(zip(d, res)))]
        # What any dispatcher that cannot know a call's duration in advance can expect: the
        # same calls in random orders (median of 200 shuffles); and what one that knew every
        # duration could reach (longest first).
        rng = random.Random(seed)
        shuffles = []
        for _ in range(200):
            order = d[:]
            rng.shuffle(order)
            shuffles.append(replay(order, conc) / ideal)
        return dict(ratio=r["wall"] / ideal, replay_ratio=r["wall"] / rp, drain=rp / ideal,
                    shuffled=statistics.median(shuffles), shuffled_p10=sorted(shuffles)[20],
                    lpt=replay(sorted(d, reverse=True), conc) / ideal,
                    class_first=replay(by_class, conc) / ideal, wall=r["wall"],
                    ideal=ideal, lat_min=min(d), lat_max=max(d), sim_inflight=st["max_in_flight"],
                    cpu=r["cpu"], done=done_rows(out))
    return one_batch(a, "latency", n, ["1K", "2K", "4K"], conc, seed, a.latency_time_scale, a.image_bytes, figures)


def s_rate(a, n, conc, seed, rpm=6000):
    def figures(r, sim, out):
        ts = arrivals_s(sim_stats(sim))
        starts = start_times(out)
        achieved = (len(ts) - 1) / (ts[-1] - ts[0]) * 60
        return dict(spm=achieved, spm_ratio=achieved / rpm, max60=max_in_window(ts, 60.0),
                    starts_max60=max_in_window(starts, 60.0), starts_max1=max_in_window(starts, 1.0),
                    max1=max_in_window(ts, 1.0), wall=r["wall"], requests=len(ts), done=done_rows(out))
    return one_batch(a, "rate", n, ["1K"], conc, seed, 0, a.image_bytes, figures, rpm=rpm)


def s_rate_slow_commit(a, n, conc, seed, rpm=3000, slow_ms=165):
    """2b at --rpm 3000 with every checkpoint commit 165 ms slower (BULKGEN_TEST_SLOW_COMMIT_MS)."""
    def figures(r, sim, out):
        ts = arrivals_s(sim_stats(sim))
        starts = start_times(out)
        achieved = (len(ts) - 1) / (ts[-1] - ts[0]) * 60
        return dict(spm=achieved, spm_ratio=achieved / rpm, max60=max_in_window(ts, 60.0),
                    starts_max60=max_in_window(starts, 60.0), starts_max1=max_in_window(starts, 1.0),
                    max1=max_in_window(ts, 1.0), max10ms=max_in_window(ts, 0.010),
                    starts_max10ms=max_in_window(starts, 0.010), span=ts[-1] - ts[0], wall=r["wall"],
                    requests=len(ts), done=done_rows(out))
    return one_batch(a, "rateslow", n, ["1K"], conc, seed, 0, a.image_bytes, figures, rpm=rpm,
                     env={"BULKGEN_TEST_SLOW_COMMIT_MS": str(slow_ms)})


def s_large(a, n, conc, seed):
    def figures(r, sim, out):
        st = sim_stats(sim)
        png = sum(e.stat().st_size for e in os.scandir(os.path.join(out, "images")))
        return dict(rss_mb=r["rss_mb"], rss_src=r["rss_src"], rps=n / r["wall"], mbps=png / 1e6 / r["wall"], wall=r["wall"],
                    cpu_k=r["cpu"] / n * 1000, sim_cpu_k=sim.cpu_s() / n * 1000,
                    sim_inflight=st["max_in_flight"], done=done_rows(out))
    return one_batch(a, "large", n, ["4K"], conc, seed, 0, a.large_image_bytes, figures)


def big_manifest(a, n):
    """The million-row manifest, written once per run of this script."""
    if n not in MANIFESTS:
        tmp = mkdtemp(a, "manifest")
        path = os.path.join(tmp, f"manifest-{n}.csv")
        t0 = time.perf_counter()
        write_manifest(path, n, ["1K"], short=True)
        print(f"  (wrote a {n:,}-row manifest, {os.path.getsize(path) / 1e6:.1f} MB, in "
              f"{time.perf_counter() - t0:.1f} s)", flush=True)
        MANIFESTS[n] = path
    return MANIFESTS[n]


def s_dry_run(a, n, seed):
    manifest = big_manifest(a, n)
    tmp = mkdtemp(a, "dryrun")
    out = os.path.join(tmp, "out")
    r = run_proc(bulkgen_cmd(manifest, DEAD_URL, out, 256, seed, extra=["--dry-run"]), tmp, "dry")
    check_ok(r, "bulkgen run --dry-run")
    return dict(wall=r["wall"], rss_mb=r["rss_mb"], rss_src=r["rss_src"], cpu=r["cpu"], out_made=float(os.path.exists(out)))


def full_then_resume(a, n, seed, manifest, conc=256):
    """Runs n rows to the end, then the same command again against a fresh sim."""
    tmp = mkdtemp(a, f"ckpt{n}")
    out = os.path.join(tmp, "out")

    def first(sim):
        r = run_proc(bulkgen_cmd(manifest, sim.url, out, conc, seed), tmp, "run")
        check_ok(r, "bulkgen run")
        return r, sim_stats(sim)["requests"], sim.cpu_s()
    r, requests, sim_cpu = with_sim(tmp, 0, 100, seed, first)
    done = done_rows(out)
    size = ckpt_mb(out)

    def again(sim):
        r2 = run_proc(bulkgen_cmd(manifest, sim.url, out, conc, seed), tmp, "resume")
        return r2, sim_stats(sim)["requests"]
    r2, requests2 = with_sim(tmp, 0, 100, seed, again, log_name="sim2.out")
    check_ok(r2, "bulkgen run (resume, all done)")
    return dict(wall=r["wall"], rps=n / r["wall"], rss_mb=r["rss_mb"], rss_src=r["rss_src"], cpu_k=r["cpu"] / n * 1000,
                sim_cpu_k=sim_cpu / n * 1000, ckpt_mb=size, done=done, requests=requests,
                resume_wall=r2["wall"], resume_rss=r2["rss_mb"], resume_rss_src=r2["rss_src"], resume_cpu=r2["cpu"], resume_requests=requests2,
                resume_rc=r2["rc"])


def s_checkpoint(a, n, seed):
    tmp = mkdtemp(a, "ckptmanifest")
    manifest = os.path.join(tmp, "manifest.csv")
    write_manifest(manifest, n, ["1K"], short=True)
    return full_then_resume(a, n, seed, manifest)


def s_many(a, n, seed):
    tmp = mkdtemp(a, "many")
    manifest, out = os.path.join(tmp, "manifest.csv"), os.path.join(tmp, "out")
    write_manifest(manifest, n, ["1K"])
    extra = ["--latency", a.many_latency]
    pre = soft_limit(a.start_nofile)
    limits = {}

    waiting = {}

    def watch(sim, pid):
        """While every call waits for its answer (the sim has seen n requests in flight and
        handed out no image yet), sample bulkgen's VmRSS: its cost per waiting call."""
        limits["bulkgen"] = "?"
        deadline = time.time() + 60

        def loop():
            while time.time() < deadline:
                try:
                    st = sim_stats(sim)
                except OSError:
                    return
                if st["successes"] > 0:
                    return
                if st["max_in_flight"] >= n:
                    try:
                        rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))
                    except (OSError, StopIteration):
                        return
                    waiting["rss_mb"] = rss / 1024
                    limits["bulkgen"] = nofile_limit(pid)
                time.sleep(0.05)
        t = threading.Thread(target=loop, daemon=True)
        t.start()
        return t

    def go(sim):
        limits["sim"] = nofile_limit(sim.p.pid)
        r = run_proc(bulkgen_cmd(manifest, sim.url, out, n, seed), tmp, "run", preexec_fn=pre,
                     on_start=lambda pid: watch(sim, pid))
        r["info"].join()
        st = sim_stats(sim)
        return r, st
    r, st = with_sim(tmp, a.many_time_scale, a.image_bytes, seed, go, extra=extra, preexec_fn=pre)
    ts = arrivals_s(st)
    done = done_rows(out) if os.path.exists(os.path.join(out, "results.csv")) else 0
    # the reference: the same settings with 50 rows in flight
    ref_n = 50
    ref_manifest, ref_out = os.path.join(tmp, "ref.csv"), os.path.join(tmp, "ref-out")
    write_manifest(ref_manifest, ref_n, ["1K"])
    ref = with_sim(tmp, a.many_time_scale, a.image_bytes, seed,
                   lambda sim: run_proc(bulkgen_cmd(ref_manifest, sim.url, ref_out, ref_n, seed), tmp, "ref",
                                        preexec_fn=pre), extra=extra, preexec_fn=pre, log_name="sim-ref.out")
    print(f"    fd limits (soft/hard): bulkgen {limits['bulkgen']}, sim {limits['sim']}; "
          f"bulkgen exit {r['rc']}, {done} of {n} rows done"
          + (f"; stderr: {r['err'][-600:]!r}" if r["rc"] != 0 else ""), flush=True)
    inflight = st["max_in_flight"]
    wait_rss = waiting.get("rss_mb", float("nan"))
    return dict(completed=float(r["rc"] == 0 and done == n), rc=r["rc"], done=done, wall=r["wall"],
                ramp=ts[-1] - ts[0], wait_rss=wait_rss, kb_per_wait=(wait_rss - ref["rss_mb"]) * 1024 / (n - ref_n),
                rss_mb=r["rss_mb"], rss_src=r["rss_src"], ref_rss=ref["rss_mb"], ref_rss_src=ref["rss_src"], sim_inflight=inflight,
                kb_per_call=(r["rss_mb"] - ref["rss_mb"]) * 1024 / max(1, inflight - ref_n),
                kb_per_call_gross=r["rss_mb"] * 1024 / max(1, inflight), cpu=r["cpu"], requests=st["requests"],
                bulkgen_nofile=limits["bulkgen"], sim_nofile=limits["sim"])


def s_baseline(a, n, conc, seed):
    tmp = mkdtemp(a, "baseline")
    manifest = os.path.join(tmp, "manifest.csv")
    write_manifest(manifest, n, ["1K"])
    res = {}
    order = ["bulkgen", "baseline"] if seed % 2 else ["baseline", "bulkgen"]
    for who in order:
        out = os.path.join(tmp, who)

        def go(sim):
            if who == "bulkgen":
                cmd = bulkgen_cmd(manifest, sim.url, out, conc, seed)
            else:
                cmd = [sys.executable, BASELINE, manifest, "--base-url", sim.url, "-o", out, "-c", str(conc)]
            r = run_proc(cmd, tmp, who)
            check_ok(r, who)
            return r, sim.cpu_s()
        r, sim_cpu = with_sim(tmp, 0, a.image_bytes, seed, go, log_name=f"sim-{who}.out")
        files = len(os.listdir(os.path.join(out, "images")))
        if files != n:
            raise RuntimeError(f"{who}: {files} images for {n} rows")
        res[who] = dict(rps=n / r["wall"], cpu=r["cpu"], rss_mb=r["rss_mb"], rss_src=r["rss_src"], sim_cpu=sim_cpu)
    b, p = res["bulkgen"], res["baseline"]
    return dict(b_rps=b["rps"], p_rps=p["rps"], r_rps=b["rps"] / p["rps"],
                b_cpu=b["cpu"], p_cpu=p["cpu"], r_cpu=b["cpu"] / p["cpu"],
                b_rss=b["rss_mb"], p_rss=p["rss_mb"], r_rss=b["rss_mb"] / p["rss_mb"],
                b_sim_cpu=b["sim_cpu"], p_sim_cpu=p["sim_cpu"], b_rss_src=b["rss_src"], p_rss_src=p["rss_src"])


# ---------------------------------------------------------------------------------------
# the table

# per scenario: metric label, key, unit, target (op, value) or None
METRICS = {
    "1": [("rows/s end to end", "rps", "rows/s", "t_rps"), ("bulkgen CPU s / 1,000 rows", "cpu_k", "s", ("<", 0.5)),
          ("peak RSS", "rss_mb", "MB", None), ("sim CPU s / 1,000 rows", "sim_cpu_k", "s", None),
          ("sim: most in flight", "sim_inflight", "n", None)],
    "2a": [("wall / ideal", "ratio", "", ("<=", 1.03)), ("wall / replay", "replay_ratio", "", None),
           ("replay / ideal (FIFO drain)", "drain", "", None),
           ("replay 4K, 2K, then 1K / ideal", "class_first", "", None),
           ("replay in random order / ideal (median of 200)", "shuffled", "", None),
           ("replay in random order / ideal (10th percentile)", "shuffled_p10", "", None),
           ("replay longest first / ideal (clairvoyant)", "lpt", "", None),
           ("wall time", "wall", "s", None), ("ideal bound", "ideal", "s", None),
           ("shortest call", "lat_min", "s", None), ("longest call", "lat_max", "s", None),
           ("sim: most in flight", "sim_inflight", "n", None)],
    "2b": [("achieved starts/min", "spm", "/min", None), ("achieved / cap", "spm_ratio", "", (">=", 0.98)),
           ("most starts in a 60 s window", "starts_max60", "n", ("<=", 6000)),
           ("most arrivals at the sim in a 60 s window", "max60", "n", ("<=", 6000)),
           ("most starts in a 1 s window", "starts_max1", "n", None),
           ("most arrivals at the sim in a 1 s window", "max1", "n", None), ("wall time", "wall", "s", None)],
    "2c": [("achieved starts/min", "spm", "/min", None), ("achieved / cap", "spm_ratio", "", None),
           ("most starts in a 60 s window", "starts_max60", "n", ("<=", 3000)),
           ("most arrivals at the sim in a 60 s window", "max60", "n", ("<=", 3000)),
           ("most starts in a 1 s window", "starts_max1", "n", None),
           ("most arrivals at the sim in a 1 s window", "max1", "n", None),
           ("most starts within 10 ms", "starts_max10ms", "n", None),
           ("most arrivals at the sim within 10 ms", "max10ms", "n", None),
           ("first to last arrival", "span", "s", None), ("wall time", "wall", "s", None)],
    "3": [("peak RSS", "rss_mb", "MB", ("<", 576)), ("rows/s end to end", "rps", "rows/s", None),
          ("PNG MB/s written", "mbps", "MB/s", None), ("bulkgen CPU s / 1,000 rows", "cpu_k", "s", None),
          ("sim CPU s / 1,000 rows", "sim_cpu_k", "s", None), ("sim: most in flight", "sim_inflight", "n", None)],
    "4i": [("dry-run wall time", "wall", "s", None), ("dry-run peak RSS", "rss_mb", "MB", None),
           ("dry-run CPU s", "cpu", "s", None)],
    "4ii": [("full run wall time", "wall", "s", None), ("rows/s end to end", "rps", "rows/s", None),
            ("peak RSS", "rss_mb", "MB", None), ("bulkgen CPU s / 1,000 rows", "cpu_k", "s", None),
            ("sim CPU s / 1,000 rows", "sim_cpu_k", "s", None), ("checkpoint size", "ckpt_mb", "MB", None),
            ("resume (all done): wall", "resume_wall", "s", ("<", 10)),
            ("resume (all done): peak RSS", "resume_rss", "MB", None),
            ("resume (all done): sim requests", "resume_requests", "n", ("<=", 0))],
    "4iii": None,  # same metrics as 4ii, filled in below
    "5": [("completed (exit 0, all rows done)", "completed", "n", (">=", 1)), ("wall time", "wall", "s", None),
          ("peak RSS", "rss_mb", "MB", None), ("peak RSS, 50-row reference", "ref_rss", "MB", None),
          ("sim: most in flight", "sim_inflight", "n", None),
          ("first to last request at the sim", "ramp", "s", None),
          ("RSS while all calls wait (no answer yet)", "wait_rss", "MB", None),
          ("RSS per waiting call (vs reference)", "kb_per_wait", "KB", None),
          ("RSS per in-flight call (marginal)", "kb_per_call", "KB", None),
          ("RSS per in-flight call (gross)", "kb_per_call_gross", "KB", None), ("bulkgen CPU s", "cpu", "s", None)],
    "6": [("bulkgen rows/s", "b_rps", "rows/s", None), ("baseline rows/s", "p_rps", "rows/s", None),
          ("rows/s bulkgen / baseline", "r_rps", "x", None),
          ("bulkgen CPU s", "b_cpu", "s", None), ("baseline CPU s", "p_cpu", "s", None),
          ("CPU bulkgen / baseline", "r_cpu", "x", None),
          ("bulkgen peak RSS", "b_rss", "MB", None), ("baseline peak RSS", "p_rss", "MB", None),
          ("RSS bulkgen / baseline", "r_rss", "x", None),
          ("sim CPU s (bulkgen run)", "b_sim_cpu", "s", None), ("sim CPU s (baseline run)", "p_sim_cpu", "s", None)],
}
METRICS["4iii"] = METRICS["4ii"]
OPS = {">=": lambda x, y: x >= y, "<": lambda x, y: x < y, "<=": lambda x, y: x <= y}


def fmt(v, unit):
    if unit in ("rows/s", "/min", "n"):
        return f"{v:,.0f}"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:,.1f}"


def table(results):
    out = [("scenario", "metric", "median", "min-max", "unit", "target", "ok")]
    failed_any = False
    for label, group, runs, errors, extra_t in results:
        for metric, key, unit, target in METRICS[group] or []:
            if target == "t_rps":
                target = extra_t
            vals = [r[key] for r in runs if r is not None and key in r]
            if not vals:
                out.append((label, metric, "-", "-", "" if unit == "n" else unit, "", "ERR"))
                failed_any = True
                continue
            med = statistics.median(vals)
            ok = "" if target is None else ("yes" if OPS[target[0]](med, target[1]) else "NO")
            if errors:
                ok = (ok + f" ({errors} run(s) failed)").strip()
            failed_any |= ok.startswith("NO") or bool(errors)
            out.append((label, metric, fmt(med, unit), f"{fmt(min(vals), unit)}-{fmt(max(vals), unit)}",
                        "" if unit == "n" else unit,
                        "" if target is None else f"{target[0]} {target[1]:g}", ok))
    widths = [max(len(r[i]) for r in out) for i in range(len(out[0]))]
    lines = []
    for j, r in enumerate(out):
        lines.append("  ".join(c.rjust(w) if 2 <= i <= 3 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines), failed_any


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=None, help="runs per scenario (default 3; 1 with --quick)")
    ap.add_argument("--heavy-repeats", type=int, default=None,
                    help="runs of the heaviest scenarios, 4(ii) and 5 (default: --repeats)")
    ap.add_argument("--quick", action="store_true", help="smoke run: small counts, 1 repeat")
    ap.add_argument("--only", default="1,2a,2b,3,4,5,6",
                    help="comma-separated scenarios of 1,2a,2b,2c,3,4,5,6 (default: all but the slow 2c)")
    ap.add_argument("--image-bytes", type=int, default=50000, help="PNG size of scenarios 1, 2, 5, 6 (default 50000)")
    ap.add_argument("--large-image-bytes", type=int, default=6_000_000, help="PNG size of scenario 3")
    ap.add_argument("--latency-time-scale", type=float, default=0.008, help="sim --time-scale of scenario 2a")
    ap.add_argument("--many-latency", default="30s", help="sim --latency of scenario 5 (default 30s)")
    ap.add_argument("--many-time-scale", type=float, default=0.1, help="sim --time-scale of scenario 5")
    ap.add_argument("--start-nofile", type=int, default=1024,
                    help="soft RLIMIT_NOFILE the processes of scenario 5 start with (default 1024)")
    ap.add_argument("--resume-1m", action="store_true",
                    help="also build the 1,000,000-row all-done state and time its resume (scenario 4iii)")
    ap.add_argument("--resume-1m-limit", type=float, default=900,
                    help="skip 4iii if the full 1M run is estimated to take longer (s, default 900)")
    ap.add_argument("--latency-rows", type=int, default=None, help="rows of scenario 2a (default 2,000)")
    ap.add_argument("--rate-rows", type=int, default=None,
                    help="rows of scenarios 2b and 2c (default 1,000 and 3,600)")
    ap.add_argument("--seed", type=int, default=1, help="sim and bulkgen seed of the first repeat (default 1)")
    ap.add_argument("--tmpdir", default=None, help="where the temporary folders go (default: system temp)")
    ap.add_argument("--build", action="store_true", help="run `cargo build --release` first")
    a = ap.parse_args()
    repeats = a.repeats or (1 if a.quick else 3)
    heavy = a.heavy_repeats or repeats
    only = set(a.only.split(","))
    q = (lambda full, small: small) if a.quick else (lambda full, small: full)

    if a.build or not os.path.exists(BIN):
        print("building: cargo build --release", flush=True)
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    print(machine())
    dirty = bench.sh("git", "diff", "--stat", "HEAD", "--", "src", "Cargo.toml", "Cargo.lock").splitlines()
    if dirty:
        print(f"uncommitted: {dirty[-1].strip()} ({', '.join(l.split('|')[0].strip() for l in dirty[:-1])})")
    tmpdir = a.tmpdir or tempfile.gettempdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"output folders in: {tmpdir} ({fs_type(tmpdir)}); load average before: "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])} (other work skews the figures)")
    print(f"fd limit of this shell: {soft}/{hard}; net.core.somaxconn "
          f"{open('/proc/sys/net/core/somaxconn').read().strip()}")
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}; repeats {repeats}"
          + (f", heavy scenarios (4ii, 5) {heavy}" if heavy != repeats else "") + "\n", flush=True)

    n1, n2a, n2b, n3 = q(20000, 1000), a.latency_rows or q(2000, 200), a.rate_rows or q(1000, 300), q(200, 16)
    n2c = a.rate_rows or q(3600, 300)
    n4i, n4ii, n5, n6 = q(1_000_000, 50_000), q(100_000, 5_000), q(5000, 500), q(5000, 500)
    # key, group, label, repeats, run(seed) -> dict, rps target (scenario 1 only)
    plan = [("1", "1", f"1 overhead ({n1:,} rows, -c 64)", repeats, lambda s: s_overhead(a, n1, 64, s), (">=", 2000)),
            ("1", "1", f"1 overhead ({n1:,} rows, -c 512)", repeats, lambda s: s_overhead(a, n1, 512, s), None),
            ("2a", "2a", f"2a latency-bound ({n2a:,} rows, -c 100)", repeats, lambda s: s_latency(a, n2a, 100, s),
             None),
            ("2b", "2b", f"2b rate-bound ({n2b:,} rows, --rpm 6000)", repeats, lambda s: s_rate(a, n2b, 64, s), None),
            ("2c", "2c", f"2c rate-bound, slow checkpoint ({n2c:,} rows, --rpm 3000, commits +165 ms)", repeats,
             lambda s: s_rate_slow_commit(a, n2c, 64, s), None),
            ("3", "3", f"3 large payloads ({n3:,} x 4K, -c 32)", repeats, lambda s: s_large(a, n3, 32, s), None),
            ("4", "4i", f"4i dry run ({n4i:,} rows)", repeats, lambda s: s_dry_run(a, n4i, s), None),
            ("4", "4ii", f"4ii checkpoint ({n4ii:,} rows, -c 256)", heavy, lambda s: s_checkpoint(a, n4ii, s), None),
            ("5", "5", f"5 many in flight ({n5:,} rows, -c {n5:,})", heavy, lambda s: s_many(a, n5, s), None),
            ("6", "6", f"6 vs baseline ({n6:,} rows, -c 64)", repeats, lambda s: s_baseline(a, n6, 64, s), None)]
    results = []
    for key, group, label, reps, fn, t in plan:
        if key not in only:
            continue
        runs, errors = [], 0
        for i in range(reps):
            t0 = time.perf_counter()
            try:
                r = fn(a.seed + i)
            except Exception as e:  # noqa: BLE001 - report and go on with the other scenarios
                errors += 1
                print(f"  {label} run {i + 1}/{reps}: FAILED: {e}", flush=True)
                traceback.print_exc(limit=2)
                runs.append(None)
                continue
            finally:
                os.sync()
            runs.append(r)
            shown = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items())
            print(f"  {label} run {i + 1}/{reps} ({time.perf_counter() - t0:.0f} s): {shown}", flush=True)
        results.append((label, group, runs, errors, t))

        if group == "4ii" and a.resume_1m:
            ok = [r for r in runs if r]
            est = n4i / statistics.median([r["rps"] for r in ok]) if ok else float("inf")
            label3 = f"4iii checkpoint ({n4i:,} rows, -c 256, 1 run)"
            if est > a.resume_1m_limit:
                print(f"  {label3}: NOT MEASURED: the full run would take ~{est:.0f} s "
                      f"(> --resume-1m-limit {a.resume_1m_limit:.0f} s)", flush=True)
                continue
            print(f"  {label3}: full run estimated at ~{est:.0f} s", flush=True)
            t0 = time.perf_counter()
            try:
                r = full_then_resume(a, n4i, a.seed, big_manifest(a, n4i))
                print(f"  {label3} ({time.perf_counter() - t0:.0f} s): "
                      + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()),
                      flush=True)
                results.append((label3, "4iii", [r], 0, None))
            except Exception as e:  # noqa: BLE001
                print(f"  {label3}: FAILED: {e}", flush=True)
                results.append((label3, "4iii", [None], 1, None))
            finally:
                os.sync()

    text, failed = table(results)
    print("\n" + text)
    print(f"\nload average after: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    return 1 if failed else 0


if __name__ == "__main__":
    code = 1
    try:
        code = main()
    finally:
        for folder in TO_DELETE:
            bench.shutil.rmtree(folder, ignore_errors=True)
    sys.exit(code)
