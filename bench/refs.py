#!/usr/bin/env python3
"""Cost of reference images (issue 11) in `bulkgen run`, against `bulkgen sim`, loopback only.

    python3 bench/refs.py [--repeats 3] [--rows 10000] [--openai-rows 1000] [--json]

Three large references (--ref-bytes, default 5,000,000 bytes each: valid RGB PNGs whose
pixels are random, so nothing compresses them; signature, IHDR, stored-deflate IDAT, IEND,
every CRC right) are named by every row, in a rotating order. Each configuration runs
against a fresh `bulkgen sim --listen 127.0.0.1:0 --time-scale 0` (answers at once) in a
fresh temporary folder, with -c 64 --rpm 0, and is repeated --repeats times; the table
shows medians (and min-max). Within a repeat the four configurations alternate, so drift
on a noisy machine hits them alike.

  gemini refs     --provider gemini, --rows rows, `images` = the 3 references. Shared
                  references go up once each with the Files API and every row sends three
                  fileData parts: the simulator's /_sim/stats must show uploads <= 3 (fails
                  otherwise), upload_bytes ~ 3 x 5 MB, references = 3 x rows.
  gemini plain    the same rows without the `images` column.
  openai refs     --provider openai (gpt-image-2), --openai-rows rows with the 3 references:
                  each row is a multipart POST /v1/images/edits that carries all three files
                  (the endpoint has no file reuse), so rows x 15 MB cross loopback.
                  "reference bytes sent" = references the sim accepted x --ref-bytes.
  openai plain    the same rows without references (generations).

Figures per run: rows/s = rows / wall time of the `bulkgen run` process (start to exit);
CPU = user+sys of that process (os.wait4 rusage), per 1,000 rows; the simulator's CPU from
/proc/PID/stat (both share the machine); peak RSS of the bulkgen process: ru_maxrss when it
is above this script's own peak, else VmHWM polled from /proc every 10 ms (see
bench/scale.py run_proc: Linux carries a parent's peak into a child's ru_maxrss).

Fails (exit 1) when a run exits non-zero or leaves a row not done, when a Gemini run
uploads more than 3 files or its rows did not all send 3 references, when an OpenAI run
with references did not send every row as an edit, or when the median peak RSS with
references exceeds the median without by more than --rss-bound-mb (default
3 x 15 + 64 = 109 MB: the 15 MB of references held once, with room for three copies, plus
64 MB of slack).
"""
import argparse, csv, json, os, random, statistics, struct, sys, tempfile, threading, time, zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import BIN, ROOT, Sim, TO_DELETE, fs_type, machine  # noqa: E402
from scale import run_proc  # noqa: E402

N_REFS = 3


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path, size_bytes, rng):
    """An RGB PNG of about `size_bytes`: random pixels (incompressible) in stored deflate
    blocks, written as it is made, so this script's own peak RSS stays small (a child's
    ru_maxrss is at least its parent's peak: see run_proc in scale.py)."""
    width = 1024
    row = 1 + 3 * width  # filter byte 0 (none), then RGB
    height = max(1, size_bytes // row)
    raw = bytearray(row * height)
    for y in range(height):
        raw[y * row + 1:(y + 1) * row] = rng.randbytes(3 * width)
    block = 65535
    blocks = [memoryview(raw)[i:i + block] for i in range(0, len(raw), block)]
    idat_len = 2 + 5 * len(blocks) + len(raw) + 4
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(struct.pack(">I", idat_len))
        crc = 0

        def put(b):
            nonlocal crc
            crc = zlib.crc32(b, crc)
            f.write(b)
        put(b"IDAT")
        put(b"\x78\x01")  # zlib header: deflate, 32 KB window, no dictionary, level 0
        for i, b in enumerate(blocks):
            put(struct.pack("<BHH", int(i == len(blocks) - 1), len(b), len(b) ^ 0xFFFF))
            put(b)
        put(struct.pack(">I", zlib.adler32(raw)))
        f.write(struct.pack(">I", crc) + png_chunk(b"IEND", b""))
        return f.tell()


def check_png(path):
    """The checks bulkgen's manifest check makes, and zlib on the pixels, so a bad generator fails here."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "signature"
    at, kinds, idat = 8, [], b""
    while at < len(data):
        n, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + n]
        assert struct.unpack(">I", data[at + 8 + n:at + 12 + n])[0] == zlib.crc32(kind + body), f"CRC of {kind}"
        kinds.append(kind)
        idat += body if kind == b"IDAT" else b""
        at += 12 + n
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND", kinds
    width, height = struct.unpack(">II", data[16:24])
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width), "pixel data size"


SIM_STATS = """
import json, sys, urllib.request
st = json.load(urllib.request.build_opener(urllib.request.ProxyHandler({})).open(sys.argv[1] + "/_sim/stats", timeout=120))
print(json.dumps({k: v for k, v in st.items() if not isinstance(v, (list, dict))}))
"""


def small_stats(sim):
    """The sim's scalar counters, fetched by a child: parsing the full /_sim/stats (10,000
    kept bodies) here would raise this script's peak RSS, which later children inherit."""
    p = bench.subprocess.run([sys.executable, "-c", SIM_STATS, sim.url], capture_output=True, text=True, env=bench.ENV)
    if p.returncode != 0:
        raise RuntimeError(f"/_sim/stats: {p.stderr[-1000:]}")
    return json.loads(p.stdout)


def watch_rchar(pid):
    """Polls /proc/PID/io rchar (bytes the process read with read(2) and friends: files,
    the manifest, the checkpoint; not its sockets, which tokio reads with recv) until the
    process is gone; the last value seen is in the returned dict."""
    seen = {"rchar": 0}

    def loop():
        while True:
            try:
                for line in open(f"/proc/{pid}/io"):
                    if line.startswith("rchar:"):
                        seen["rchar"] = int(line.split()[1])
            except (OSError, ValueError):
                return
            time.sleep(0.005)
    threading.Thread(target=loop, daemon=True).start()
    return seen


def write_manifests(folder, rows, refs):
    """Per batch, manifest-NAME-refs.csv (id,prompt,images) and manifest-NAME-plain.csv
    (id,prompt): the same ids and prompts; every row names all the references, in a rotating order."""
    paths = {}
    for name, n in rows.items():
        for kind in ("refs", "plain"):
            path = os.path.join(folder, f"manifest-{name}-{kind}.csv")
            with open(path, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["id", "prompt"] + (["images"] if kind == "refs" else []))
                for i in range(n):
                    order = refs[i % N_REFS:] + refs[:i % N_REFS]  # rotating order
                    w.writerow([f"r{i:06d}", f"bench prompt {i}: the product on a kitchen table, variant {i}"]
                               + ([";".join(order)] if kind == "refs" else []))
            paths[(name, kind)] = path
    return paths


def done_rows(out):
    try:
        with open(os.path.join(out, "results.csv"), newline="") as f:
            return sum(r["status"] == "done" for r in csv.DictReader(f))
    except OSError:
        return 0


def one_run(a, dialect, kind, n, manifest, seed):
    tmp = tempfile.mkdtemp(prefix=f"bulkgen-refs-{dialect}-{kind}-", dir=a.tmpdir)
    TO_DELETE.append(tmp)
    out = os.path.join(tmp, "out")
    sim = Sim(tmp, 0, a.image_bytes, seed)
    try:
        model = "gemini-3-pro-image" if dialect == "gemini" else "gpt-image-2"
        cmd = [BIN, "run", manifest, "--provider", dialect, "--model", model, "--base-url", sim.url, "-o", out,
               "-c", str(a.concurrency), "--rpm", "0", "--quiet", "--seed", str(seed)]
        r = run_proc(cmd, tmp, "run", on_start=watch_rchar)
        what = f"{dialect} {kind} ({n} rows)"
        if r["rc"] != 0:
            raise RuntimeError(f"{what}: bulkgen run exited {r['rc']}: {r['err'][-2000:]}")
        done = done_rows(out)
        if done != n:
            raise RuntimeError(f"{what}: only {done} of {n} rows done: {r['err'][-2000:]}")
        st = small_stats(sim)
        sim_cpu = sim.cpu_s()
    finally:
        sim.stop()
        os.sync()  # folders are deleted at the very end (see bench.py)
    res = dict(wall=r["wall"], rps=n / r["wall"], rss_mb=r["rss_mb"], rss_src=r["rss_src"],
               cpu_s=r["cpu"], cpu_k=r["cpu"] / n * 1000, sim_cpu_k=sim_cpu / n * 1000,
               requests=st["requests"], uploads=st["uploads"], upload_starts=st["upload_starts"],
               upload_mb=st["upload_bytes"] / 1e6, references=st["references"], edits=st["edits"],
               file_gets=st["file_gets"], files_gone=st["files_gone"], read_mb=r["info"]["rchar"] / 1e6)
    res["ref_mb_sent"] = res["upload_mb"] if dialect == "gemini" else res["references"] * a.ref_bytes / 1e6
    problems = []
    if kind == "refs":
        if res["references"] < N_REFS * n:
            problems.append(f"the sim accepted {res['references']} references, fewer than {N_REFS} x {n} rows")
        if dialect == "gemini" and res["uploads"] > N_REFS:
            problems.append(f"{res['uploads']} uploads (upload starts {res['upload_starts']}), more than {N_REFS}")
        if dialect == "openai" and res["edits"] < n:
            problems.append(f"{res['edits']} edit requests for {n} rows")
    elif res["references"] or res["uploads"] or res["edits"]:
        problems.append(f"references sent without an images column: {res}")
    if problems:
        raise RuntimeError(f"{what}: " + "; ".join(problems))
    return res


def med(runs, key):
    vals = [r[key] for r in runs]
    return statistics.median(vals), min(vals), max(vals)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10000, help="rows of the Gemini batches (default 10000)")
    ap.add_argument("--openai-rows", type=int, default=1000, help="rows of the OpenAI batches (default 1000)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per configuration; medians reported (default 3)")
    ap.add_argument("--concurrency", "-c", type=int, default=64, help="bulkgen -c (default 64)")
    ap.add_argument("--ref-bytes", type=int, default=5_000_000, help="size of each reference PNG (default 5,000,000)")
    ap.add_argument("--image-bytes", type=int, default=50000, help="PNG size the sim answers with (default 50000)")
    ap.add_argument("--rss-bound-mb", type=float, default=3 * 15 + 64,
                    help="most the median peak RSS with references may exceed the one without (default 109)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tmpdir", default=None, help="where the per-run folders go (default: system temp)")
    ap.add_argument("--build", action="store_true", help="run `cargo build --release` even if the binary exists")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    a = ap.parse_args()
    log = lambda *x: print(*x, file=sys.stderr if a.json else sys.stdout, flush=True)

    if a.build or not os.path.exists(BIN):
        log("building: cargo build --release")
        bench.subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    log(machine())
    tmpdir = a.tmpdir or tempfile.gettempdir()
    log(f"output folders in: {tmpdir} ({fs_type(tmpdir)}); load average before: "
        f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
    log(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}; repeats {a.repeats}; -c {a.concurrency} "
        f"--rpm 0; sim --time-scale 0 --image-bytes {a.image_bytes}")

    shared = tempfile.mkdtemp(prefix="bulkgen-refs-inputs-", dir=a.tmpdir)
    TO_DELETE.append(shared)
    rng = random.Random(a.seed)
    refs, sizes = [], []
    for i in range(N_REFS):
        name = f"ref{i + 1}.png"
        sizes.append(write_png(os.path.join(shared, name), a.ref_bytes, rng))
        # checked in a child, which reads the whole file (kept out of this script's peak RSS)
        bench.subprocess.run([sys.executable, "-c", "import sys, refs; refs.check_png(sys.argv[1])",
                              os.path.join(shared, name)], cwd=os.path.dirname(os.path.abspath(__file__)), check=True)
        refs.append(name)
    log(f"references: {N_REFS} PNGs of {', '.join(f'{s:,}' for s in sizes)} bytes (random pixels, stored deflate)\n")
    a.ref_bytes = statistics.mean(sizes)
    manifests = write_manifests(shared, {"gemini": a.rows, "openai": a.openai_rows}, refs)

    configs = [("gemini", "refs", a.rows), ("gemini", "plain", a.rows),
               ("openai", "refs", a.openai_rows), ("openai", "plain", a.openai_rows)]
    runs = {(d, k): [] for d, k, _ in configs}
    for i in range(a.repeats):
        for dialect, kind, n in configs:
            r = one_run(a, dialect, kind, n, manifests[(dialect, kind)], a.seed + i)
            runs[(dialect, kind)].append(r)
            log(f"  {dialect} {kind:5} run {i + 1}/{a.repeats}: {n} rows, wall {r['wall']:.2f}s, {r['rps']:,.0f} rows/s, "
                f"RSS {r['rss_mb']:.1f} MB ({r['rss_src']}), CPU {r['cpu_s']:.2f}s, sim CPU/1k {r['sim_cpu_k']:.2f}s, "
                f"uploads {r['uploads']} ({r['upload_mb']:.1f} MB), references {r['references']}, edits {r['edits']}, "
                f"read {r['read_mb']:,.0f} MB")

    # the table
    cols = [("rows/s", "rps", "{:,.0f}"), ("peak RSS MB", "rss_mb", "{:.1f}"), ("CPU s/1k rows", "cpu_k", "{:.2f}"),
            ("sim CPU s/1k", "sim_cpu_k", "{:.2f}")]
    out = [("configuration", "rows") + tuple(c for c, _, _ in cols) + ("uploads", "upload MB", "references",
                                                                       "edits", "ref MB sent", "MB read")]
    summary = {}
    for dialect, kind, n in configs:
        rs = runs[(dialect, kind)]
        cells = []
        s = dict(rows=n, runs=rs)
        for _, key, f in cols:
            m, lo, hi = med(rs, key)
            s[key] = dict(median=m, min=lo, max=hi)
            cells.append(f"{f.format(m)} ({f.format(lo)}-{f.format(hi)})")
        for key in ("uploads", "upload_mb", "references", "edits", "ref_mb_sent", "read_mb"):
            s[key] = med(rs, key)[0]
        cells += [f"{s['uploads']:g}", f"{s['upload_mb']:,.1f}", f"{s['references']:,.0f}", f"{s['edits']:,.0f}",
                  f"{s['ref_mb_sent']:,.1f}", f"{s['read_mb']:,.0f}"]
        summary[f"{dialect}_{kind}"] = s
        out.append((f"{dialect} {'3 refs' if kind == 'refs' else 'no refs'}", f"{n:,}", *cells))

    failures, ratios = [], []
    for dialect in ("gemini", "openai"):
        w, wo = summary[f"{dialect}_refs"], summary[f"{dialect}_plain"]
        rps_ratio = w["rps"]["median"] / wo["rps"]["median"]
        rss_diff = w["rss_mb"]["median"] - wo["rss_mb"]["median"]
        ok = rss_diff <= a.rss_bound_mb
        ratios.append((dialect, rps_ratio, w["rss_mb"]["median"] / wo["rss_mb"]["median"], rss_diff, ok,
                       w["cpu_k"]["median"] / wo["cpu_k"]["median"]))
        summary[f"{dialect}_ratio"] = dict(rps=rps_ratio, rss_diff_mb=rss_diff, rss_ok=ok)
        if not ok:
            failures.append(f"{dialect}: peak RSS with references {w['rss_mb']['median']:.1f} MB is "
                            f"{rss_diff:.1f} MB above the {wo['rss_mb']['median']:.1f} MB without "
                            f"(bound {a.rss_bound_mb:g} MB)")
    summary["rss_bound_mb"] = a.rss_bound_mb
    summary["failures"] = failures

    if a.json:
        print(json.dumps(summary, indent=1))
    else:
        widths = [max(len(r[i]) for r in out) for i in range(len(out[0]))]
        print(f"\nmedians of {a.repeats} (min-max); -c {a.concurrency}, --rpm 0, sim time scale 0")
        for j, r in enumerate(out):
            print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
            if j == 0:
                print("  ".join("-" * w for w in widths))
        print(f"\nwith / without references (RSS bound: with - without <= {a.rss_bound_mb:g} MB):")
        for dialect, rps_ratio, rss_ratio, diff, ok, cpu_ratio in ratios:
            print(f"  {dialect:6}  rows/s x{rps_ratio:.3f}   CPU/row x{cpu_ratio:.2f}   peak RSS x{rss_ratio:.2f} "
                  f"({diff:+.1f} MB: {'ok' if ok else 'OVER THE BOUND'})")
        print("  openai: edits carry every file on every call (no reuse on that endpoint): "
              f"{summary['openai_refs']['ref_mb_sent']:,.0f} MB of references for {a.openai_rows:,} rows, "
              f"against {summary['gemini_refs']['upload_mb']:,.1f} MB uploaded once for {a.rows:,} Gemini rows")
    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
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
