#!/usr/bin/env python3
"""Peak memory of `bulkgen run` against answers that never end (issue 10, item 4).

An HTTP server in this script, on 127.0.0.1, answers every request with 200 and a
chunked body that never ends (1 MiB chunks of 'A' until the client hangs up). bulkgen
runs against it with --max-attempts 1, so every call reads up to --max-response-bytes,
is refused as bad_response and its row fails; with 2 x concurrency rows every slot is
busy twice. The peak RSS of the bulkgen process (ru_maxrss from os.wait4) is set
against cap x concurrency: the bound --max-response-bytes promises is that peak memory
grows with that product, not with what the server sends.

Builds nothing: give the binary (default target/release/bulkgen, `cargo build
--release` first). Loopback only; no key is needed by the server (a dummy one is set).

    python3 bench/hostile_rss.py [--bin PATH] [--caps 128MiB,16MiB] [--concurrency 1,4]
"""
import argparse, csv, http.server, os, socketserver, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNK = b"A" * (1 << 20)
FRAME = b"%x\r\n" % len(CHUNK) + CHUNK + b"\r\n"


class Endless(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sent = 0
    lock = threading.Lock()

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        sent = 0
        try:
            while True:
                self.wfile.write(FRAME)
                sent += len(CHUNK)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            with Endless.lock:
                Endless.sent += sent
            self.close_connection = True

    do_GET = do_POST

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def parse_size(s):
    units = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30,
             "kb": 10**3, "mb": 10**6, "gb": 10**9}
    num = s.rstrip("KkMmGgIiBb")
    return int(float(num) * units[s[len(num):].lower()])


def run(binary, base, cap, concurrency, tmp):
    out = os.path.join(tmp, f"out-{cap}-{concurrency}")
    manifest = os.path.join(tmp, f"m-{concurrency}.csv")
    with open(manifest, "w") as f:
        f.write("id,prompt\n")
        for i in range(2 * concurrency):
            f.write(f"r{i},prompt {i}\n")
    env = dict(os.environ, BULKGEN_API_KEY="sk-bench-not-a-real-key-000000")
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(var, None)
    args = [binary, "run", manifest, "-o", out, "--base-url", base, "--no-preflight", "-q", "--rpm", "0",
            "-c", str(concurrency), "--max-attempts", "1", "--max-response-bytes", cap]
    err = open(os.path.join(tmp, f"stderr-{cap}-{concurrency}"), "w+")
    t = time.monotonic()
    child = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t
    err.seek(0)
    try:
        with open(os.path.join(out, "results.csv")) as f:
            classes = sorted({r["error_class"] for r in csv.DictReader(f)})
    except OSError:
        classes = []
    return child.returncode, usage.ru_maxrss * 1024, wall, classes, err.read()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "bulkgen"))
    p.add_argument("--caps", default="1MiB,16MiB,128MiB", help="--max-response-bytes values (128MiB is the default)")
    p.add_argument("--concurrency", default="1,4")
    a = p.parse_args()
    if not os.access(a.bin, os.X_OK):
        sys.exit(f"no bulkgen binary at {a.bin}: build it with `cargo build --release` or give --bin")
    server = Server(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    mib = 1 << 20
    print(f"bulkgen {a.bin}; endless chunked answers from {base}; 2 x c rows, --max-attempts 1")
    print(f"{'cap':>8} {'c':>3} {'cap x c':>9} {'peak RSS':>9} {'RSS - base':>10} {'(RSS-base)/(cap x c)':>21} "
          f"{'sent':>9} {'wall':>6} {'exit':>4}")
    with tempfile.TemporaryDirectory(prefix="hostile-rss-") as tmp:
        base_rss = None
        for cap in a.caps.split(","):
            for c in (int(x) for x in a.concurrency.split(",")):
                Endless.sent = 0
                code, rss, wall, classes, stderr = run(a.bin, base, cap, c, tmp)
                budget = parse_size(cap) * c
                if base_rss is None:
                    base_rss = rss  # the first (smallest) run: what bulkgen needs without bodies
                over = (rss - base_rss) / budget
                print(f"{cap:>8} {c:>3} {budget / mib:>7.0f}Mi {rss / mib:>7.1f}Mi {(rss - base_rss) / mib:>8.1f}Mi "
                      f"{over:>21.2f} {Endless.sent / mib:>7.0f}Mi {wall:>5.1f}s {code:>4}")
                if code != 1 or classes != ["bad_response"]:
                    print(f"  unexpected: exit {code}, classes {classes} (1 and bad_response expected)\n{stderr[-2000:]}")
    server.shutdown()


if __name__ == "__main__":
    main()
