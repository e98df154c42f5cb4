#!/usr/bin/env python3
"""The batch engine (`bulkgen run --engine batch`, issue 12) against `bulkgen sim`, loopback only.

    python3 bench/batch.py                      # everything, --repeats 3
    python3 bench/batch.py --quick              # smoke run: 2,000 / 1,000 lines, 1 repeat
    python3 bench/batch.py --only ingest --dialects gemini

Every run gets a fresh `bulkgen sim --listen 127.0.0.1:0 --time-scale 0` (a batch job is
done as it is created, an online call answers at once) and a fresh temporary folder that
holds the manifest, the --models-file and the output folder. Within a repeat the
configurations alternate, so drift on a noisy machine hits them alike; the table shows
medians (and min-max) of --repeats runs.

ingest  --lines rows (default 50,000), ~--image-bytes PNGs (default 50,000: ~67 KB a
        result line as base64 in JSON, so a ~3.4 GB result file), one size class (1K).
          batch   --engine batch --poll-interval 200ms: ONE job holding every line. The
                  engine cuts jobs by the catalogue's [[batch]] limits (max_lines, and
                  result_bytes per class keeping each job's expected result under 900 MB),
                  so a --models-file replaces the dialect's [[batch]] entry with
                  result_bytes = 1 per class (OpenAI keeps its real max_lines = 50,000:
                  more lines than that make ceil(lines / 50,000) jobs).
          online  the same rows, the default engine, -c 64 --rpm 0.
        Targets: batch rows/s >= online rows/s (same dialect, medians); batch peak RSS < 200 MB.
big     --big-lines rows (default 15,000) of ~--big-image-bytes PNGs (default 100,000: ~134 KB
        a line, so a ~2.0 GB result file; its real size, from the simulator's result_bytes,
        is in the table), batch only. Target: peak RSS < 300 MB.

Figures per run: rows/s = rows / wall time of the `bulkgen run` process (start to exit);
CPU = user+sys of that process (os.wait4 rusage), per 1,000 rows; the simulator's CPU from
/proc/PID/stat (it renders and base64-encodes every image, on the same cores); peak RSS of
the bulkgen process as bench/scale.py run_proc measures it (ru_maxrss when above this
script's own peak, else VmHWM polled every 10 ms). A batch run's phases come from its
checkpoint (OUT/bulkgen.db, bulkgen's own clock): "submit" = job assigned -> created (input
JSONL built, uploaded, create sent and answered), "poll wait" = created -> first poll (the
--poll-interval sleep), "ingest" = first poll -> job closed (result file streamed, every
image written, rows marked done), "ingest rows/s" = lines / ingest; "longest gap" is the
longest pause between two consecutive lines taken (attempts.duration_s, sorted): a stall
shows there. VmRSS is sampled every 50 ms: the table gives its peak during submit and during
ingest, and RSS at each quarter of the ingest, so memory that grows with lines shows ("nan":
no sample fell in that phase, shorter than 50 ms).

Every run is checked before its figures count (any failure stops the benchmark, exit 1):
exit code 0; results.csv lists every row, all `done`; images/ holds one file per row; batch
runs: the checkpoint holds the expected number of jobs, all closed, their lines summing to
the rows and all succeeded, one `batch` attempt per row, and the simulator saw that many
batch creates and no online call; online runs: no batch create, at least one call per row.
Exit 1 also when a target is missed.

Images (~2.5 GB for 50,000 rows) are written to --tmpdir (default: the system temp dir);
folders are deleted at the very end (see bench.py), unless free space there drops below
what the next run needs plus 5 GB: then the finished runs' folders are deleted first (said
on the run's line), which can slow the following run's inode allocation on ext4.
"""
import argparse, csv, math, os, statistics, sqlite3, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import BIN, ROOT, Sim, TO_DELETE, fs_type, machine  # noqa: E402
from scale import run_proc  # noqa: E402
from refs import small_stats  # noqa: E402

MODEL = {"gemini": "gemini-3-pro-image", "openai": "gpt-image-2"}
# [[batch]] entries that let one job hold every line: the real input limits, and
# result_bytes of 1 a class so the 900 MB cut on expected result bytes never splits a job.
OPENAI_MAX_LINES = 50000
BATCH_TOML = {
    "gemini": 'dialect = "gemini"\nmax_input_bytes = 2000000000\nmax_open_jobs = 100\n',
    "openai": f'dialect = "openai"\nmax_lines = {OPENAI_MAX_LINES}\nmax_input_bytes = 200000000\n',
}


def write_models_file(path, dialect):
    with open(path, "w") as f:
        f.write("# bench/batch.py: one job for every line\n[[batch]]\n" + BATCH_TOML[dialect]
                + 'result_bytes = { "512" = 1, "1K" = 1, "2K" = 1, "4K" = 1 }\n'
                + 'source = "bench/batch.py"\nas_of = "2026-11-24"\n')


def write_manifest(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt", "size"])
        for i in range(rows):
            w.writerow([f"r{i:06d}", f"bench prompt {i}: a lighthouse at dusk, variant {i}", "1K"])


def watch_rss(pid):
    """Samples VmRSS of `pid` every 50 ms until it is gone: a list of (unix time, KB)."""
    samples = []

    def loop():
        while True:
            try:
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmRSS:"):
                        samples.append((time.time(), int(line.split()[1])))
                        break
            except (OSError, ValueError):
                return
            time.sleep(0.05)
    threading.Thread(target=loop, daemon=True).start()
    return samples


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def make_room(tmpdir, need):
    """Deletes the finished runs' folders now if `tmpdir` has less than `need` + 5 GB free."""
    if free_bytes(tmpdir) >= need + 5e9 or not TO_DELETE:
        return ""
    n = len(TO_DELETE)
    while TO_DELETE:
        bench.shutil.rmtree(TO_DELETE.pop(), ignore_errors=True)
    os.sync()
    return f" [deleted {n} earlier folder(s) first: {free_bytes(tmpdir) / 1e9:.0f} GB free now]"


def check(out, n, engine, dialect, st):
    """Raises unless the run did all its work (see the module doc); returns the checkpoint's
    figures of a batch run."""
    with open(os.path.join(out, "results.csv"), newline="") as f:
        states = [r["status"] for r in csv.DictReader(f)]
    if len(states) != n or states.count("done") != n:
        raise RuntimeError(f"results.csv: {states.count('done')} of {n} rows done ({len(states)} listed)")
    files = sum(1 for _ in os.scandir(os.path.join(out, "images")))
    if files != n:
        raise RuntimeError(f"images/ holds {files} files for {n} rows")
    if engine == "online":
        if st["batch_creates"] or st["requests"] < n:
            raise RuntimeError(f"online run: {st['batch_creates']} batch creates, {st['requests']} calls for {n} rows")
        return {}
    db = sqlite3.connect(os.path.join(out, "bulkgen.db"))
    try:
        jobs = db.execute("SELECT step, lines, succeeded, assigned_at, created_at, polled_at, closed_at "
                          "FROM jobs ORDER BY jid").fetchall()
        durations = [d for (d,) in db.execute(
            "SELECT duration_s FROM attempts WHERE kind = 'batch' AND outcome = 'ok' ORDER BY duration_s")]
        started = db.execute("SELECT started_at FROM runs ORDER BY run_id LIMIT 1").fetchone()[0]
    finally:
        db.close()
    want = math.ceil(n / OPENAI_MAX_LINES) if dialect == "openai" else 1
    problems = []
    if len(jobs) != want or any(j[0] != "closed" for j in jobs):
        problems.append(f"{len(jobs)} job(s) (steps {sorted({j[0] for j in jobs})}), expected {want}, all closed")
    if sum(j[1] for j in jobs) != n or sum(j[2] for j in jobs) != n:
        problems.append(f"jobs hold {sum(j[1] for j in jobs)} lines, {sum(j[2] for j in jobs)} succeeded, for {n} rows")
    if len(durations) != n:
        problems.append(f"{len(durations)} batch attempts for {n} rows")
    if st["batch_creates"] != want or st["requests"]:
        problems.append(f"the sim saw {st['batch_creates']} batch creates and {st['requests']} online calls")
    if problems:
        raise RuntimeError("batch run: " + "; ".join(problems))
    first = jobs[0]
    return dict(started=started, assigned=first[3], created=first[4], polled=first[5], closed=jobs[-1][6],
                gap=max((b - a for a, b in zip(durations, durations[1:])), default=0.0))


def one_run(a, scenario, dialect, engine, n, image_bytes, seed):
    tmp = tempfile.mkdtemp(prefix=f"bulkgen-batch-{scenario}-{dialect}-{engine}-", dir=a.tmpdir)
    note = make_room(a.tmpdir or tempfile.gettempdir(), n * image_bytes * 1.1 + 1e9)
    TO_DELETE.append(tmp)
    manifest, models, out = (os.path.join(tmp, x) for x in ("manifest.csv", "models.toml", "out"))
    write_manifest(manifest, n)
    write_models_file(models, dialect)
    sim = Sim(tmp, 0, image_bytes, seed)
    try:
        cmd = [BIN, "run", manifest, "--provider", dialect, "--model", MODEL[dialect], "--base-url", sim.url,
               "-o", out, "-c", str(a.concurrency), "--rpm", "0", "--quiet", "--seed", str(seed)]
        if engine == "batch":
            cmd += ["--engine", "batch", "--poll-interval", a.poll_interval, "--models-file", models]
        t0 = time.time()
        r = run_proc(cmd, tmp, "run", on_start=watch_rss)
        what = f"{scenario} {dialect} {engine} ({n:,} rows)"
        if r["rc"] != 0:
            raise RuntimeError(f"{what}: bulkgen run exited {r['rc']}: {r['err'][-2000:]}")
        st = small_stats(sim)
        sim_cpu = sim.cpu_s()
        try:
            ck = check(out, n, engine, dialect, st)
        except RuntimeError as e:
            raise RuntimeError(f"{what}: {e}; stderr: {r['err'][-1500:]}") from None
    finally:
        sim.stop()
        os.sync()  # folders are deleted at the very end (see bench.py)
    res = dict(wall=r["wall"], rps=n / r["wall"], cpu_k=r["cpu"] / n * 1000, rss_mb=r["rss_mb"],
               rss_src=r["rss_src"], sim_cpu_k=sim_cpu / n * 1000, result_gb=st["result_bytes"] / 1e9,
               upload_mb=st["upload_bytes"] / 1e6, note=note)
    if ck:
        samples = r["info"]
        peak = lambda lo, hi: max((kb / 1024 for t, kb in samples if lo <= t <= hi), default=float("nan"))
        ingest = ck["closed"] - ck["polled"]
        res.update(start_s=ck["assigned"] - t0, submit_s=ck["created"] - ck["assigned"],
                   wait_s=ck["polled"] - ck["created"], ingest_s=ingest, ingest_rps=n / ingest,
                   end_s=r["wall"] - (ck["closed"] - t0), gap_s=ck["gap"],
                   rss_submit=peak(ck["assigned"], ck["created"]), rss_ingest=peak(ck["polled"], ck["closed"]),
                   rss_q=[peak(ck["polled"] + ingest * (q - 1) / 4, ck["polled"] + ingest * q / 4)
                          for q in (1, 2, 3, 4)])
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=None, help="rows of the ingest scenario (default 50000; 2000 --quick)")
    ap.add_argument("--image-bytes", type=int, default=50000, help="PNG size of the ingest scenario (default 50000)")
    ap.add_argument("--big-lines", type=int, default=None, help="rows of the big scenario (default 15000; 1000 --quick)")
    ap.add_argument("--big-image-bytes", type=int, default=100000,
                    help="PNG size of the big scenario (default 100000: ~2.0 GB of results at 15,000 lines)")
    ap.add_argument("--dialects", default="gemini,openai", help="comma-separated (default gemini,openai)")
    ap.add_argument("--only", default="ingest,big", help="scenarios to run: ingest, big (default both)")
    ap.add_argument("--repeats", type=int, default=None, help="runs per configuration (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2,000 and 1,000 lines, 1 repeat")
    ap.add_argument("--concurrency", "-c", type=int, default=64, help="-c of the online runs (default 64)")
    ap.add_argument("--poll-interval", default="200ms", help="--poll-interval of the batch runs (default 200ms)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tmpdir", default=None, help="where the per-run folders go (default: system temp)")
    ap.add_argument("--build", action="store_true", help="run `cargo build --release` even if the binary exists")
    a = ap.parse_args()
    lines = a.lines or (2000 if a.quick else 50000)
    big_lines = a.big_lines or (1000 if a.quick else 15000)
    repeats = a.repeats or (1 if a.quick else 3)
    dialects = [d for d in a.dialects.split(",") if d]
    only = set(a.only.split(","))
    if not set(dialects) <= set(MODEL) or not only <= {"ingest", "big"}:
        ap.error("--dialects takes gemini, openai; --only takes ingest, big")

    if a.build or not os.path.exists(BIN):
        print("building: cargo build --release", flush=True)
        bench.subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    print(machine())
    tmpdir = a.tmpdir or tempfile.gettempdir()
    print(f"output folders in: {tmpdir} ({fs_type(tmpdir)}, {free_bytes(tmpdir) / 1e9:.0f} GB free); load average "
          f"before: {' '.join(open('/proc/loadavg').read().split()[:3])} (other work skews the figures)")
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}; repeats {repeats}; sim --time-scale 0; "
          f"online -c {a.concurrency} --rpm 0; batch --poll-interval {a.poll_interval}\n", flush=True)

    # (scenario, dialect, engine, rows, image bytes)
    configs = []
    for d in dialects:
        if "ingest" in only:
            configs += [("ingest", d, "batch", lines, a.image_bytes), ("ingest", d, "online", lines, a.image_bytes)]
    if "big" in only:
        configs += [("big", d, "batch", big_lines, a.big_image_bytes) for d in dialects]
    runs = {c: [] for c in configs}
    need = repeats * sum(n * b * 1.1 for _, _, _, n, b in configs)
    if need + 5e9 > free_bytes(tmpdir):
        print(f"note: the runs write ~{need / 1e9:.0f} GB of images and {tmpdir} has {free_bytes(tmpdir) / 1e9:.0f} GB "
              "free: finished runs' folders will be deleted mid-way (said on the run's line)\n", flush=True)
    for i in range(repeats):
        for c in configs:
            scenario, dialect, engine, n, image_bytes = c
            r = one_run(a, scenario, dialect, engine, n, image_bytes, a.seed + i)
            runs[c].append(r)
            line = (f"  {scenario:6} {dialect:6} {engine:6} run {i + 1}/{repeats}: {n:,} rows, wall {r['wall']:.2f}s, "
                    f"{r['rps']:,.0f} rows/s, CPU/1k {r['cpu_k']:.3f}s, RSS {r['rss_mb']:.1f} MB ({r['rss_src']}), "
                    f"sim CPU/1k {r['sim_cpu_k']:.3f}s")
            if engine == "batch":
                line += (f", result file {r['result_gb']:.2f} GB; start {r['start_s']:.2f}s, submit {r['submit_s']:.2f}s "
                         f"(upload {r['upload_mb']:.1f} MB), poll wait {r['wait_s']:.2f}s, ingest {r['ingest_s']:.2f}s "
                         f"({r['ingest_rps']:,.0f} rows/s, longest gap {r['gap_s']:.3f}s), end {r['end_s']:.2f}s; "
                         f"RSS submit {r['rss_submit']:.0f} MB, ingest by quarter "
                         + "/".join(f"{q:.0f}" for q in r["rss_q"]) + " MB")
            print(line + r["note"], flush=True)

    def med(rs, key):
        vals = [r[key] for r in rs]
        return statistics.median(vals), min(vals), max(vals)

    cols = [("rows/s", "rps", "{:,.0f}"), ("CPU s/1k rows", "cpu_k", "{:.3f}"), ("peak RSS MB", "rss_mb", "{:.1f}"),
            ("sim CPU s/1k", "sim_cpu_k", "{:.3f}")]
    bcols = [("submit s", "submit_s", "{:.2f}"), ("poll wait s", "wait_s", "{:.2f}"), ("ingest s", "ingest_s", "{:.2f}"),
             ("ingest rows/s", "ingest_rps", "{:,.0f}"), ("RSS ingest MB", "rss_ingest", "{:.1f}"),
             ("longest gap s", "gap_s", "{:.3f}")]
    out = [("configuration", "rows", "result GB") + tuple(c for c, _, _ in cols + bcols)]
    for c in configs:
        scenario, dialect, engine, n, _ = c
        rs = runs[c]
        cells = [f"{n:,}", f"{med(rs, 'result_gb')[0]:.2f}" if engine == "batch" else "-"]
        for _, key, f in cols + bcols:
            if key not in rs[0]:
                cells.append("-")
                continue
            m, lo, hi = med(rs, key)
            cells.append(f.format(m) if len(rs) == 1 else f"{f.format(m)} ({f.format(lo)}-{f.format(hi)})")
        out.append((f"{scenario} {dialect} {engine}", *cells))
    widths = [max(len(r[i]) for r in out) for i in range(len(out[0]))]
    print(f"\nmedians of {repeats} (min-max)")
    for j, r in enumerate(out):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))

    print("\ntargets (medians):")
    failures = []

    def target(text, ok):
        print(f"  {text}: {'ok' if ok else 'NOT MET'}")
        if not ok:
            failures.append(text)
    for d in dialects:
        if "ingest" in only:
            b, o = runs[("ingest", d, "batch", lines, a.image_bytes)], runs[("ingest", d, "online", lines, a.image_bytes)]
            rb, ro = med(b, "rps")[0], med(o, "rps")[0]
            target(f"{d} batch rows/s {rb:,.0f} >= online {ro:,.0f} (x{rb / ro:.2f}; ingest phase alone "
                   f"{med(b, 'ingest_rps')[0]:,.0f} rows/s, x{med(b, 'ingest_rps')[0] / ro:.2f})", rb >= ro)
            target(f"{d} batch peak RSS {med(b, 'rss_mb')[0]:.1f} MB < 200 MB ({lines:,} rows)", med(b, "rss_mb")[0] < 200)
        if "big" in only:
            g = runs[("big", d, "batch", big_lines, a.big_image_bytes)]
            target(f"{d} batch peak RSS {med(g, 'rss_mb')[0]:.1f} MB < 300 MB with a {med(g, 'result_gb')[0]:.2f} GB "
                   f"result file ({med(g, 'rps')[0]:,.0f} rows/s)", med(g, "rss_mb")[0] < 300)
    return 1 if failures else 0


if __name__ == "__main__":
    code = 1
    try:
        code = main()
    except RuntimeError as e:
        print(f"FAIL: {e}", file=sys.stderr)
    finally:
        for folder in TO_DELETE:
            bench.shutil.rmtree(folder, ignore_errors=True)
    sys.exit(code)
