"""``anyclip serve`` under load on loopback: requests/s and p50/p95/p99 latency, dynamic batching on vs off.

Starts a real server (``anyclip serve`` in a subprocess, uvicorn) for each mode -- batching on
(``--max-batch-size 32``) and off (``--max-batch-size 1``) -- and drives it with an asyncio load generator
(``httpx.AsyncClient``) at each concurrency level: that many clients each send one ``/v1/embeddings``
request of a short text, wait for the answer, and send the next, for ``--seconds`` after a short warm-up.
Every request carries its own ``X-Request-ID``; an answer must echo it (header and body) exactly once, so
lost, mismatched and duplicated answers are counted. Goals (issue 22): batching >= 3x the requests/s of
batch size 1 at concurrency 32; p99 <= 2x p50 at concurrency 8 (batching on); zero lost.

    python bench/bench_serve.py                          # ViT-B-32, random weights, 1/8/32/128 clients
    python bench/bench_serve.py --model anyclip-shapes --seconds 5

The client and the server share the machine's cores: the figures are for the whole loop on one host.
"""

import argparse
import asyncio
import collections
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, max_batch_size: int, max_wait_ms: float, cache: str, timeout_s: float = 900):
    """``anyclip serve`` on a free loopback port in a subprocess; returns ``(process, base_url)`` once healthy."""
    import httpx
    env = dict(os.environ, ANYCLIP_CACHE=cache, PYTHONPATH=str(ROOT / "src"))
    env.setdefault("KERAS_BACKEND", "jax")
    port = free_port()
    argv = [sys.executable, "-c", "import sys; from anyclip.cli import main; sys.exit(main())", "serve",
            "--port", str(port), "--model", model, "--max-batch-size", str(max_batch_size),
            "--max-wait-ms", str(max_wait_ms), "--max-queue", "4096", "--log-level", "warning"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"the server did not answer /health within {timeout_s:g} s")


async def load(base_url: str, concurrency: int, seconds: float, warmup_s: float) -> dict:
    """``concurrency`` closed-loop clients for ``warmup_s + seconds``; statistics of the timed part."""
    import httpx
    latencies, statuses, echoed = [], collections.Counter(), collections.Counter()
    sent, mismatched = set(), [0]
    start = time.perf_counter()
    timed_from, stop_at = start + warmup_s, start + warmup_s + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client, worker):
        i = 0
        while time.perf_counter() < stop_at:
            request_id = f"{worker}-{i}-{uuid.uuid4().hex[:8]}"
            i += 1
            t0 = time.perf_counter()
            response = await client.post("/v1/embeddings", json={"input": f"a photo of shape number {i}"},
                                         headers={"X-Request-ID": request_id})
            t1 = time.perf_counter()
            if t0 < timed_from:
                continue
            sent.add(request_id)
            statuses[response.status_code] += 1
            got = response.headers.get("x-request-id")
            if response.status_code == 200:
                body = response.json()
                if got != request_id or body.get("request_id") != request_id or len(body["data"]) != 1:
                    mismatched[0] += 1
                echoed[got] += 1
                latencies.append(t1 - t0)

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:
        await asyncio.gather(*(client_loop(client, w) for w in range(concurrency)))
    ok = sum(1 for rid in sent if echoed[rid] >= 1)
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [float("nan")] * 99
    return {"concurrency": concurrency, "requests": len(sent), "rps": len(latencies) / seconds,
            "p50": q[49] * 1e3, "p95": q[94] * 1e3, "p99": q[98] * 1e3, "lost": len(sent) - ok,
            "twice": sum(1 for n in echoed.values() if n > 1), "mismatched": mismatched[0],
            "errors": sum(n for s, n in statuses.items() if s != 200)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ViT-B-32", help="model (random weights unless it has a default tag)")
    parser.add_argument("--concurrency", default="1,8,32,128", help="comma-separated client counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per level (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds per level (default 2)")
    parser.add_argument("--max-batch-size", type=int, default=32, help="the batching-on mode's batch (default 32)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="the batching-on mode's wait (default 5)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    rows = {}
    with tempfile.TemporaryDirectory() as cache:
        for mode, batch in (("batching on", args.max_batch_size), ("batching off", 1)):
            t0 = time.perf_counter()
            proc, url = start_server(args.model, batch, args.max_wait_ms, cache)
            print(f"{mode}: server ready in {time.perf_counter() - t0:.0f} s (max batch {batch})", file=sys.stderr)
            try:
                for c in levels:
                    rows[mode, c] = asyncio.run(load(url, c, args.seconds, args.warmup))
                    print(f"  {mode} c={c}: {rows[mode, c]['rps']:.1f} req/s", file=sys.stderr)
            finally:
                proc.terminate()
                proc.wait(30)
    print(f"\n{args.model}, /v1/embeddings of one short text per request, {args.seconds:g} s per level, "
          f"{os.cpu_count()} CPUs, backend {os.environ.get('KERAS_BACKEND', 'jax')}\n")
    print("| mode | clients | req/s | p50 ms | p95 ms | p99 ms | lost | answered twice | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (mode, c), r in rows.items():
        print(f"| {mode} | {c} | {r['rps']:.1f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | "
              f"{r['lost'] + r['mismatched']} | {r['twice']} | {r['errors']} |")
    print()
    if ("batching on", 32) in rows and ("batching off", 32) in rows:
        ratio = rows["batching on", 32]["rps"] / rows["batching off", 32]["rps"]
        print(f"goal: batching >= 3x req/s of batch size 1 at 32 clients: {ratio:.2f}x "
              f"({'met' if ratio >= 3 else 'NOT met'})")
    if ("batching on", 8) in rows:
        tail = rows["batching on", 8]["p99"] / rows["batching on", 8]["p50"]
        print(f"goal: p99 <= 2x p50 at 8 clients (batching on): {tail:.2f}x ({'met' if tail <= 2 else 'NOT met'})")
    lost = sum(r["lost"] + r["mismatched"] + r["twice"] for r in rows.values())
    print(f"goal: zero lost or answered twice: {lost} ({'met' if lost == 0 else 'NOT met'})")


if __name__ == "__main__":
    main()
