#!/usr/bin/env python3
"""A hand-written batch script, written the way such scripts usually are: the baseline
that `bench/scale.py` (scenario 6) compares `bulkgen run` with.

    python3 bench/baseline.py MANIFEST --base-url URL -o OUT [-c 64] [--session]

* Reads the manifest CSV (columns id, prompt and optionally size: 1K, 2K, 4K or WxH).
* A `concurrent.futures.ThreadPoolExecutor` with -c workers; each row is one `requests.post`
  to `{base}/v1/images/generations` with JSON {model, prompt, n: 1, size: "1024x1024",
  response_format: "b64_json"} and `Authorization: Bearer <key>` (the key is taken from
  $BASELINE_API_KEY, default "x").
* The base64 image is decoded and written to `OUT/images/<id>.png` with a plain
  open/write/close: no fsync, no temp file + rename, no checkpoint, no retries, no rate
  limit. A failed row is counted and printed to stderr; the exit code is 1 if any failed.
* By default every call is a bare `requests.post` (a new TCP connection per call, as most
  such scripts do). `--session` uses one `requests.Session` per worker thread instead
  (keep-alive), the more careful variant.

If `requests` is not installed, the script falls back to `urllib.request` (stdlib) and
says so on stderr ("baseline: using urllib").
"""
import argparse, base64, concurrent.futures, csv, json, os, sys, threading

try:
    import requests
except ImportError:  # pragma: no cover - depends on the machine
    requests = None

SIZES = {"1K": "1024x1024", "2K": "2048x2048", "4K": "4096x4096"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest")
    ap.add_argument("--base-url", required=True)
    ap.add_argument("-o", "--out", default="baseline-out")
    ap.add_argument("-c", "--concurrency", type=int, default=8)
    ap.add_argument("--model", default="gpt-image-1")
    ap.add_argument("--session", action="store_true", help="one requests.Session (keep-alive) per thread")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per call (default 600)")
    a = ap.parse_args()

    url = a.base_url.rstrip("/") + "/v1/images/generations"
    headers = {"Authorization": "Bearer " + os.environ.get("BASELINE_API_KEY", "x"),
               "Content-Type": "application/json"}
    images = os.path.join(a.out, "images")
    os.makedirs(images, exist_ok=True)
    with open(a.manifest, newline="") as f:
        rows = list(csv.DictReader(f))

    local = threading.local()

    def post(body):
        if requests is None:
            import urllib.request
            req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
            with urllib.request.urlopen(req, timeout=a.timeout) as r:
                return json.load(r)
        if a.session:
            if not hasattr(local, "s"):
                local.s = requests.Session()
            r = local.s.post(url, json=body, headers=headers, timeout=a.timeout)
        else:
            r = requests.post(url, json=body, headers=headers, timeout=a.timeout)
        r.raise_for_status()
        return r.json()

    def one(row):
        size = row.get("size") or "1K"
        body = {"model": a.model, "prompt": row["prompt"], "n": 1, "size": SIZES.get(size, size),
                "response_format": "b64_json"}
        data = post(body)
        png = base64.b64decode(data["data"][0]["b64_json"])
        with open(os.path.join(images, row["id"] + ".png"), "wb") as f:
            f.write(png)

    if requests is None:
        print("baseline: using urllib (requests is not installed)", file=sys.stderr)
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.concurrency) as pool:
        futures = {pool.submit(one, row): row["id"] for row in rows}
        for fut in concurrent.futures.as_completed(futures):
            try:
                fut.result()
            except Exception as e:  # noqa: BLE001 - a script like this just logs and moves on
                failed += 1
                print(f"row {futures[fut]}: {e}", file=sys.stderr)
    print(f"done {len(rows) - failed}, failed {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
