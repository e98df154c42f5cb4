#!/usr/bin/env python3
"""SIGKILL campaign against `bulkgen run` (issue 10: nothing lost, nothing leaked, nothing hangs).

    python3 bench/attack.py                                  # 60 kills, 3,000-row blocks, -c 16
    python3 bench/attack.py --kills 20 --seed 7              # a shorter campaign, other draws
    python3 bench/attack.py --regenerate-changed-attack      # then the --regenerate-changed phase

Loopback only. One `bulkgen sim --listen 127.0.0.1:0` (its key required, --time-scale 0.002:
1K calls of ~72 ms at the fastest, ~90 ms P50, ~300 ms P99) lives through the whole campaign,
so its counters (/_sim/stats `per_prompt`, keyed by the FNV-1a fingerprint of the prompt, see
src/sim/png.rs prompt_tag) see every request of every run. Every prompt is unique, so a
prompt's counters are its row's.

Main phase. Repeatedly: start `bulkgen run MANIFEST --base-url SIM -o OUT -c C --rpm 0`,
wait a seeded random 0.3-3 s, SIGKILL it, wait for it to die, then snapshot
  - OUT/bulkgen.db, opened read-only: every row's state and prompt;
  - the sim's per-prompt counters (requests, successes = images handed out, i.e. paid);
  - the image file of every row that became done since the last snapshot, checked at once.
At ~135 rows/s a 3,000-row batch would end after ~15 kills, so the manifest grows by a block
of --rows new rows (appended; earlier rows unchanged) whenever fewer rows are left than the
next wait could use (estimated from the rows done per second so far). A run that ends by
itself before its kill is not counted as a kill (the table says how many did). After --kills
kills the same command runs to the end (exit 0 expected, within --final-timeout).

  images lost         rows done at any snapshot or at the end whose OUT/images/<id>.<ext> is
                      missing, not a complete PNG (every chunk's CRC, IHDR..IEND, the pixel
                      data inflating to exactly height x (1 + width x 3) bytes), or whose
                      tEXt chunk names another prompt; checked when the row is first seen
                      done and again at the end. Guarantee: 0.
  done rows re-sent   rows done at some snapshot whose request count at the sim grew after
                      it. Guarantee: 0.
  paid twice per kill rows that got an image from the sim during the killed run, were not
                      done at the kill (the answer was lost with the process) and were asked
                      again later. Guarantee: at most -c for every kill.
  re-sent per kill    rows asked during the killed run, not done at the kill, asked again
                      later (paid-twice plus calls cut off unanswered): the calls in flight,
                      so at most -c as well (README: "at most --concurrency rows").
  requests / rows     generation requests the sim saw over the rows of the manifest.

--regenerate-changed-attack adds a second phase on the finished folder: every prompt is
changed, then `bulkgen run ... --regenerate-changed` is started and SIGKILLed --regen-kills
times the same way and finally run to the end. Every image must then carry its NEW prompt:
a row that was running when killed still has its old image in place, and a recovery that
takes "a complete file is there" for "done" keeps the stale image without a call. The phase
counts those (stale images: tag = the old prompt), plus the same lost / re-sent figures.

The exit code is 0 if every guarantee held (and the final runs exited 0), else 1. The
output folder is deleted at the end unless --keep.
"""
import argparse, json, os, random, shutil, signal, sqlite3, statistics, struct, subprocess, sys, tempfile, time
import urllib.request, zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (bench.Sim: `bulkgen sim` on 127.0.0.1:0)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Loopback only: no proxy may reroute the children's traffic; no stray BULKGEN_* setting.
ENV = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("BULKGEN_")}
ENV["BULKGEN_API_KEY"] = "attack-key"
EXTENSIONS = ("png", "jpg", "webp")


# ---------------------------------------------------------------------------------------
# the sim's tagged PNGs (src/sim/png.rs), read back


def prompt_tag(prompt):
    """FNV-1a 64 of the prompt's UTF-8 bytes, 16 hex digits (png.rs prompt_tag)."""
    h = 0xCBF29CE484222325
    for b in prompt.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def check_png(data):
    """(None, tag fields) for a complete sim PNG, else (reason, None)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "not a PNG (signature)", None
    pos, idat, tag, ihdr, ended = 8, [], None, None, False
    while pos < len(data):
        if len(data) - pos < 12:
            return f"truncated chunk header at byte {pos}", None
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if len(body) != length or len(data) < pos + 12 + length:
            return f"truncated {kind!r} chunk", None
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            return f"bad CRC in {kind!r}", None
        if ihdr is None and kind != b"IHDR":
            return "first chunk is not IHDR", None
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"tEXt":
            key, _, text = body.partition(b"\0")
            if key == b"bulkgen-sim":
                tag = dict(kv.split("=", 1) for kv in text.decode().split(";") if "=" in kv)
        elif kind == b"IEND":
            ended = pos + 12 + length == len(data)
            break
        pos += 12 + length
    if not ended:
        return "no IEND at the end", None
    w, h, depth, color = ihdr[:4]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color, 0)
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as e:
        return f"pixel data does not inflate: {e}", None
    if len(raw) != h * (1 + (w * channels * depth + 7) // 8):
        return f"pixel data is {len(raw)} bytes for {w}x{h}", None
    if tag is None:
        return "no bulkgen-sim tEXt chunk", None
    return None, tag


def check_image(images, listing, rid, prompt):
    """None if images/<rid>.<ext> is a complete image made for `prompt`, else why not
    (with 'stale' when it was made for the row's previous prompt; see the caller)."""
    names = [f"{rid}.{e}" for e in EXTENSIONS if f"{rid}.{e}" in listing]
    if not names:
        return "missing", None
    if len(names) > 1:
        return f"several files: {names}", None
    with open(os.path.join(images, names[0]), "rb") as f:
        why, tag = check_png(f.read())
    if why:
        return why, None
    if tag.get("prompt") != prompt_tag(prompt):
        return "made for another prompt", tag.get("prompt")
    return None, None


# ---------------------------------------------------------------------------------------
# processes


def Sim(a, tmp):
    """The campaign's one simulator: bench.Sim with its key required and a long stats
    timeout (per_prompt holds every row of a big manifest)."""
    return bench.Sim(tmp, a.time_scale, a.image_bytes, a.seed, extra=["--api-key-env", "BULKGEN_API_KEY"],
                     bin=a.bin, env=ENV, stats_timeout=60)


def read_rows(out):
    """{id: (state, prompt)} from the checkpoint, opened read-only (no process runs on it)."""
    path = os.path.join(out, "bulkgen.db")
    if not os.path.exists(path):
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return {i: (s, p) for i, s, p in db.execute("SELECT id, state, prompt FROM rows")}
    except sqlite3.OperationalError as e:  # killed before the schema was committed
        if "no such table" in str(e):
            return {}
        raise
    finally:
        db.close()


def write_manifest(path, prompts):
    with open(path, "w", newline="") as f:
        f.write("id,prompt\n")
        f.write("".join(f'{rid},"{p}"\n' for rid, p in prompts.items()))


# ---------------------------------------------------------------------------------------
# a phase: kills, then a run to the end, and what it did


class Phase:
    def __init__(self, a, name, sim, manifest, out, log_dir, prompts, extra=(), grow=False, old_prompts=None):
        self.a, self.name, self.sim, self.manifest, self.out = a, name, sim, manifest, out
        self.log_dir, self.prompts, self.extra, self.grow = log_dir, prompts, list(extra), grow
        self.old_prompts = old_prompts or {}
        self.images = os.path.join(out, "images")
        self.snaps = []          # one per kill, then the final one: dict(rows, counts, ...)
        self.kills = []          # per kill: dict(wait, done, new_done, running, ...)
        self.early_exits = []    # runs that ended before their kill: (rc, stderr tail)
        self.bad_at_snapshot = {}  # id -> reason, for files bad when their row was first seen done
        self.seen_done = set()
        self.blocks = 1
        self.final = None
        base = self.sim.stats()
        self.base_requests = base["requests"]
        self.base_counts = {t: (c["requests"], c["successes"]) for t, c in base["per_prompt"].items()}

    def cmd(self):
        return [self.a.bin, "run", self.manifest, "--base-url", self.sim.url, "-o", self.out,
                "-c", str(self.a.c), "--rpm", "0", "--quiet", "--seed", str(self.a.seed), *self.extra]

    def snapshot(self):
        st = self.sim.stats()
        rows = read_rows(self.out)
        listing = set(os.listdir(self.images)) if os.path.isdir(self.images) else set()
        counts = {t: (c["requests"], c["successes"]) for t, c in st["per_prompt"].items()}
        for rid, (state, prompt) in rows.items():
            if state == "done" and (rid, prompt) not in self.seen_done:
                self.seen_done.add((rid, prompt))
                why, _ = check_image(self.images, listing, rid, prompt)
                if why:
                    self.bad_at_snapshot.setdefault(rid, why)
        return dict(rows=rows, counts=counts, requests=st["requests"], auth_failures=st["auth_failures"],
                    listing=listing)

    def maybe_grow(self, rate):
        if not self.grow:
            return
        last = self.snaps[-1]["rows"] if self.snaps else {}
        done = sum(1 for s, _ in last.values() if s == "done")
        left = len(self.prompts) - done
        if left < rate * self.a.max_wait * 1.25 + 2 * self.a.c:
            start = len(self.prompts)
            for i in range(start, start + self.a.rows):
                self.prompts[f"r{i:06d}"] = f"attack prompt {i}: a lighthouse at dusk, variant {i}"
            write_manifest(self.manifest, self.prompts)
            self.blocks += 1

    def run(self, kills, rng):
        """`kills` SIGKILLs (runs that end by themselves do not count), then a run to the end."""
        made, runs, rates = 0, 0, []
        while made < kills and runs < 2 * kills + 10:
            self.maybe_grow(statistics.median(rates) if rates else 0)
            wait = rng.uniform(self.a.min_wait, self.a.max_wait)
            runs += 1
            with open(os.path.join(self.log_dir, f"{self.name}-run{runs:03d}.err"), "w+") as err:
                t0 = time.perf_counter()
                p = subprocess.Popen(self.cmd(), stdout=subprocess.DEVNULL, stderr=err, env=ENV)
                try:
                    rc = p.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    rc = None
                    p.kill()  # SIGKILL
                    p.wait()
                alive = time.perf_counter() - t0
                err.seek(0)
                tail = err.read()[-800:]
            time.sleep(0.1)  # the sim drops the handlers of the dead process's connections
            prev = self.snaps[-1] if self.snaps else None
            snap = self.snapshot()
            if rc is not None:
                self.early_exits.append((rc, tail))
                print(f"  [{self.name}] run {runs} ended by itself after {alive:.2f} s, exit {rc}"
                      + (f": {tail.strip()[-300:]!r}" if rc != 0 else "") , flush=True)
                self.snaps.append(snap)  # a snapshot, but not a kill
                self.kills.append(None)
                if rc == 0 and not self.grow:
                    break  # nothing left to kill in this phase
                continue
            made += 1
            done = sum(1 for s, _ in snap["rows"].values() if s == "done")
            before = sum(1 for s, _ in prev["rows"].values() if s == "done") if prev else 0
            running = [rid for rid, (s, _) in snap["rows"].items() if s == "running"]
            with_file = sum(1 for rid in running if any(f"{rid}.{e}" in snap["listing"] for e in EXTENSIONS))
            rates.append((done - before) / alive)
            self.snaps.append(snap)
            self.kills.append(dict(wait=alive, done=done, new_done=done - before, running=len(running),
                                   running_with_file=with_file, rows=len(self.prompts)))
            print(f"  [{self.name}] kill {made:2d} after {alive:.2f} s: {done:,} of {len(self.prompts):,} done "
                  f"(+{done - before}), {len(running)} running ({with_file} with a file in place)", flush=True)
        # the same command, to the end
        with open(os.path.join(self.log_dir, f"{self.name}-final.err"), "w+") as err:
            t0 = time.perf_counter()
            p = subprocess.Popen(self.cmd(), stdout=subprocess.DEVNULL, stderr=err, env=ENV)
            try:
                rc = p.wait(timeout=self.a.final_timeout)
            except subprocess.TimeoutExpired:
                rc = "hung"
                p.kill()
                p.wait()
            wall = time.perf_counter() - t0
            err.seek(0)
            tail = err.read()[-1500:]
        time.sleep(0.1)
        self.snaps.append(self.snapshot())
        self.kills.append(None)
        self.final = dict(rc=rc, wall=wall, tail=tail)
        print(f"  [{self.name}] run to the end: exit {rc} after {wall:.1f} s"
              + (f"\n{tail}" if rc != 0 else ""), flush=True)

    # -----------------------------------------------------------------------------------

    def figures(self):
        snaps = self.snaps
        end = snaps[-1]
        fin = end["counts"]
        req = lambda counts, t: counts.get(t, self.base_counts.get(t, (0, 0)))[0]  # noqa: E731
        suc = lambda counts, t: counts.get(t, self.base_counts.get(t, (0, 0)))[1]  # noqa: E731
        # images lost: every (row, prompt) seen done, checked again against the final files
        # (a row whose prompt later changed is judged by its final prompt)
        final_rows = end["rows"]
        lost = dict(self.bad_at_snapshot)
        stale = {}
        seen_ids = {rid for rid, _ in self.seen_done}
        for rid, (state, prompt) in final_rows.items():
            if state != "done" and rid not in seen_ids:
                continue
            if state != "done":
                lost.setdefault(rid, f"was done, now {state}")
                continue
            why, made_for = check_image(self.images, end["listing"], rid, prompt)
            if why:
                lost.setdefault(rid, why)
                old = self.old_prompts.get(rid)
                if made_for is not None and old is not None and made_for == prompt_tag(old):
                    stale[rid] = why
        for rid, why in self.bad_at_snapshot.items():
            old = self.old_prompts.get(rid)
            if old is not None and "another prompt" in why:
                stale.setdefault(rid, why)
        # done rows re-sent: done with prompt P at snapshot k, P's requests grew afterwards
        resent_done = set()
        first_done = {}
        for k, s in enumerate(snaps):
            for rid, (state, prompt) in s["rows"].items():
                if state == "done" and (rid, prompt) not in first_done:
                    first_done[(rid, prompt)] = k
        for (rid, prompt), k in first_done.items():
            t = prompt_tag(prompt)
            if req(fin, t) > req(snaps[k]["counts"], t):
                resent_done.add(rid)
        # per kill: rows asked (paid) during the killed run, not done at the kill, asked later
        per_kill_paid, per_kill_resent = [], []
        prev_counts = self.base_counts
        for k, s in enumerate(snaps[:-1]):
            kinfo = self.kills[k]
            counts = s["counts"]
            if kinfo is not None:
                paid = resent = 0
                for rid, (state, prompt) in s["rows"].items():
                    if state == "done":
                        continue
                    t = prompt_tag(prompt)
                    r_k = req(counts, t)
                    if r_k > prev_counts.get(t, (0, 0))[0] and req(fin, t) > r_k:
                        resent += 1
                        if suc(counts, t) > prev_counts.get(t, (0, 0))[1]:
                            paid += 1
                kinfo["paid_twice"], kinfo["resent"] = paid, resent
                per_kill_paid.append(paid)
                per_kill_resent.append(resent)
            prev_counts = counts
        rows = len(final_rows)
        requests = end["requests"] - self.base_requests
        # rows the sim never handed an image for their final prompt (in this phase)
        unserved = sum(1 for _, p in final_rows.values()
                       if suc(fin, prompt_tag(p)) <= self.base_counts.get(prompt_tag(p), (0, 0))[1])
        stray = sorted(n for n in end["listing"]
                       if n.rsplit(".", 1)[0] not in final_rows or final_rows[n.rsplit(".", 1)[0]][0] != "done")
        return dict(kills=sum(1 for k in self.kills if k), early=len(self.early_exits),
                    early_bad=[rc for rc, _ in self.early_exits if rc != 0], rows=rows,
                    blocks=self.blocks, done=sum(1 for s, _ in final_rows.values() if s == "done"),
                    lost=lost, stale=stale, resent_done=resent_done, paid=per_kill_paid, resent=per_kill_resent,
                    requests=requests, unserved=unserved, stray=stray, final=self.final,
                    auth_failures=end["auth_failures"],
                    waits=[k["wait"] for k in self.kills if k], running=[k["running"] for k in self.kills if k],
                    with_file=[k["running_with_file"] for k in self.kills if k])


# ---------------------------------------------------------------------------------------
# the table


def med(xs):
    return statistics.median(xs) if xs else 0


def table(lines):
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    out = []
    for j, r in enumerate(lines):
        out.append("  ".join(c.rjust(w) if i == 2 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def report(phase, f, a, regen=False):
    """Rows of the table for one phase and whether its guarantees held."""
    c = a.c
    rows, ok_all = [], True

    def line(metric, value, target="", ok=None):
        nonlocal ok_all
        if ok is not None:
            ok_all &= ok
        rows.append((phase, metric, value, target, "" if ok is None else ("yes" if ok else "NO")))

    line("kills made", f"{f['kills']}", "")
    if f["early"]:
        line("runs that ended before their kill", f"{f['early']} (exit codes: "
             f"{', '.join(map(str, f['early_bad'])) or 'all 0'})", "", None if not f["early_bad"] else False)
    line("wait before kill, median (min-max)", f"{med(f['waits']):.2f} s ({min(f['waits'], default=0):.2f}-"
         f"{max(f['waits'], default=0):.2f})")
    line("rows in the manifest" + ("" if regen else " (blocks)"), f"{f['rows']:,}" + ("" if regen else f" ({f['blocks']})"))
    line("rows running at a kill, median / max", f"{med(f['running']):.0f} / {max(f['running'], default=0)}")
    line("  of them with a file in place, median / max", f"{med(f['with_file']):.0f} / {max(f['with_file'], default=0)}")
    final = f["final"]
    line("run to the end: exit code, wall", f"{final['rc']}, {final['wall']:.1f} s", "exit 0", final["rc"] == 0)
    line("rows done at the end", f"{f['done']:,} of {f['rows']:,}", "all", f["done"] == f["rows"])
    line("images lost (missing, incomplete, wrong prompt)", f"{len(f['lost'])}", "0", not f["lost"])
    if regen:
        line("  of them stale (made for the old prompt)", f"{len(f['stale'])}", "0", not f["stale"])
        line("rows the sim never gave an image for the new prompt", f"{f['unserved']:,}", "")
    line("done rows re-sent", f"{len(f['resent_done'])}", "0", not f["resent_done"])
    line("rows paid twice per kill, max / median", f"{max(f['paid'], default=0)} / {med(f['paid']):.0f}",
         f"<= {c}", max(f["paid"], default=0) <= c)
    line("  total over all kills", f"{sum(f['paid'])}")
    line("rows re-sent per kill (in flight), max / median", f"{max(f['resent'], default=0)} / {med(f['resent']):.0f}",
         f"<= {c}", max(f["resent"], default=0) <= c)
    line("generation requests / rows", f"{f['requests']:,} / {f['rows']:,} = {f['requests'] / max(1, f['rows']):.4f}")
    line("stray files in images/ at the end", f"{len(f['stray'])}", "")
    if f["auth_failures"]:
        line("requests the sim refused for the key", f"{f['auth_failures']}", "0", False)
    return rows, ok_all


def examples(name, what, d, n=5):
    if d:
        items = sorted(d.items()) if isinstance(d, dict) else [(x, "") for x in sorted(d)]
        print(f"  {name}: {what}: " + "; ".join(f"{k} {v}".strip() for k, v in items[:n])
              + (f" ... ({len(items)} in all)" if len(items) > n else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "bulkgen"), help="the bulkgen binary")
    ap.add_argument("--rows", type=int, default=3000, help="rows of the manifest, and of each block it grows by")
    ap.add_argument("--kills", type=int, default=60, help="SIGKILLs of the main phase (default 60)")
    ap.add_argument("-c", type=int, default=16, help="bulkgen -c (default 16)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the waits, the sim and bulkgen (default 1)")
    ap.add_argument("--time-scale", type=float, default=0.002, help="sim --time-scale (default 0.002: ~70-300 ms calls)")
    ap.add_argument("--image-bytes", type=int, default=20000, help="sim --image-bytes (default 20000)")
    ap.add_argument("--min-wait", type=float, default=0.3, help="shortest wait before a kill, s (default 0.3)")
    ap.add_argument("--max-wait", type=float, default=3.0, help="longest wait before a kill, s (default 3)")
    ap.add_argument("--final-timeout", type=float, default=300, help="a run to the end longer than this hangs (s)")
    ap.add_argument("--regenerate-changed-attack", action="store_true",
                    help="then change every prompt and kill `run --regenerate-changed` (see above)")
    ap.add_argument("--regen-kills", type=int, default=10, help="SIGKILLs of that phase (default 10)")
    ap.add_argument("--tmpdir", default=None, help="where the output folder goes (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the output folder")
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    if not os.path.exists(a.bin):
        sys.exit(f"no binary at {a.bin}: cargo build --release (or --bin)")
    rng = random.Random(a.seed)
    tmp = tempfile.mkdtemp(prefix="bulkgen-attack-", dir=a.tmpdir)
    out, manifest = os.path.join(tmp, "out"), os.path.join(tmp, "manifest.csv")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"bulkgen: {a.bin} (built {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(os.path.getmtime(a.bin)))}; "
          f"this checkout at {commit or '?'}); {os.cpu_count()} CPUs; load average "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}; folder {tmp}\n", flush=True)
    t_start = time.perf_counter()
    sim = Sim(a, tmp)
    ok, lines = True, [("phase", "metric", "value", "target", "ok")]
    try:
        prompts = {f"r{i:06d}": f"attack prompt {i}: a lighthouse at dusk, variant {i}" for i in range(a.rows)}
        write_manifest(manifest, prompts)
        main_phase = Phase(a, "main", sim, manifest, out, tmp, prompts, grow=True)
        main_phase.run(a.kills, rng)
        f = main_phase.figures()
        rows, good = report("main", f, a)
        lines += rows
        ok &= good
        examples("main", "images lost", f["lost"])
        examples("main", "done rows re-sent", f["resent_done"])
        examples("main", "stray files", {n: "" for n in f["stray"]})
        if a.regenerate_changed_attack:
            old = dict(prompts)
            new = {rid: p + " (changed)" for rid, p in prompts.items()}
            write_manifest(manifest, new)
            regen = Phase(a, "regen", sim, manifest, out, tmp, new, extra=["--regenerate-changed"], old_prompts=old)
            regen.run(a.regen_kills, rng)
            g = regen.figures()
            rows, good = report("regen", g, a, regen=True)
            lines += rows
            ok &= good
            examples("regen", "images lost", g["lost"])
            examples("regen", "done rows re-sent", g["resent_done"])
    finally:
        sim.stop()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\n" + table(lines))
    print(f"\nguarantees {'held' if ok else 'BROKEN'}; campaign {time.perf_counter() - t_start:.0f} s; load average "
          f"after: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
