#!/usr/bin/env python3
"""Several images per call (issue 13): `n` against a call per image, loopback only.

    python3 bench/images_per_call.py [--repeats 3] [--rows 2000] [--count 10] [--json]

A manifest of --rows rows, each of count --count (gpt-image-2, 1K, text only), is run with
`bulkgen run --simulate --time-scale 0 -c 64 --rpm 0` (the built-in simulator answers at
once, in the same process) twice per repeat, alternating:

  n         the catalogue's images_per_call (10 for gpt-image-2): ceil(count / 10) calls
            per row, each answering up to 10 images
  per image --images-per-call 1: a call per image

Per run: images/s = images / wall time of the process; CPU = user+sys per 1,000 images;
peak RSS (ru_maxrss of the child); calls = the report's call count. The simulator runs in
the process, so CPU and RSS include it: read the ratios. The table shows medians (min-max).
This measures bulkgen's own cost per image, not the provider's: the simulator's latency
does not depend on n (no published figure says how it does), so no wall-time figure of a
real provider follows from it.

Fails (exit 1) when a run exits non-zero, leaves an image not done, or the `n` run does
not make ceil(count / 10) calls per row.
"""
import argparse, csv, json, os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "bulkgen")


def run(manifest: str, out: str, extra: list) -> dict:
    args = [BIN, "run", manifest, "--simulate", "--time-scale", "0", "-c", "64", "--rpm", "0", "-q", "-o", out]
    t = time.monotonic()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(args + extra, stdout=subprocess.DEVNULL, stderr=err)
        # This child's own rusage (RUSAGE_CHILDREN would give the peak of every child yet).
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.monotonic() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            err.seek(0)
            sys.exit(f"bulkgen exited {p.returncode}: {err.read()[-2000:].decode(errors='replace')}")
    report = json.load(open(os.path.join(out, "report.json")))
    o = report["overall"]
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "calls": o["attempts"],
        "done": o["done"],
        "rows": o["rows"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    modes = {"n": [], "per image": ["--images-per-call", "1"]}
    results = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = os.path.join(tmp, "m.csv")
        with open(manifest, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "prompt", "size", "count"])
            for i in range(a.rows):
                w.writerow([f"r{i:06}", f"bench prompt {i}", "1K", a.count])
        for r in range(a.repeats):
            for mode, extra in modes.items():
                out = os.path.join(tmp, f"out-{r}-{mode.replace(' ', '-')}")
                got = run(manifest, out, extra)
                images = a.rows * a.count
                if got["done"] != images or got["rows"] != images:
                    sys.exit(f"{mode}: {got['done']} of {images} images done")
                want_calls = a.rows * -(-a.count // 10) if mode == "n" else images
                if got["calls"] != want_calls:
                    sys.exit(f"{mode}: {got['calls']} calls, expected {want_calls}")
                results[mode].append(got)
    images = a.rows * a.count

    def med(mode, f):
        xs = [f(x) for x in results[mode]]
        return statistics.median(xs), min(xs), max(xs)

    rows = []
    for mode in modes:
        ips = med(mode, lambda x: images / x["wall"])
        cpu = med(mode, lambda x: x["cpu"] / images * 1000)
        rss = med(mode, lambda x: x["rss_mb"])
        rows.append((mode, results[mode][0]["calls"], ips, cpu, rss))
    if a.json:
        print(json.dumps({m: results[m] for m in modes}, indent=1))
        return
    print(f"{a.rows} rows x count {a.count} = {images} images, median of {a.repeats} (min-max)")
    print(f"{'mode':<10} {'calls':>7} {'images/s':>22} {'CPU s/1k images':>22} {'peak RSS MB':>20}")
    for mode, calls, ips, cpu, rss in rows:
        fmt = lambda t, p: f"{t[0]:.{p}f} ({t[1]:.{p}f}-{t[2]:.{p}f})"
        print(f"{mode:<10} {calls:>7} {fmt(ips, 0):>22} {fmt(cpu, 3):>22} {fmt(rss, 0):>20}")
    n, one = rows[0], rows[1]
    print(f"ratios n / per image: calls x{n[1] / one[1]:.2f}, images/s x{n[2][0] / one[2][0]:.2f}, "
          f"CPU per image x{n[3][0] / one[3][0]:.2f}, peak RSS x{n[4][0] / one[4][0]:.2f}")


if __name__ == "__main__":
    main()
