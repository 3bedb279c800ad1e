"""A small HTTP/1.1 load generator, for machines without `wrk`: `python -m bench.loadgen URL TOKENS_FILE`.

It does what bench/pings.lua does (one ping per request, round-robin technician tokens, recorded now) over
keep-alive connections on one asyncio loop, and prints the same `BENCH ...` line. Python is far slower
than wrk at this, so on a small machine it takes CPU from the server: prefer wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit


def _body(rng: random.Random, base: tuple[float, float]) -> bytes:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    lat = base[0] + (rng.random() - 0.5) * 0.002
    lon = base[1] + (rng.random() - 0.5) * 0.003
    ping = (
        f'{{"lat":{lat:.6f},"lon":{lon:.6f},"recorded_at":"{now}","accuracy_m":{3 + rng.random() * 20:.1f},'
        f'"speed_mps":{rng.random() * 15:.1f},"heading_deg":{rng.random() * 359.9:.1f}}}'
    )
    return f'{{"pings":[{ping}]}}'.encode()


async def _run(url: str, tokens: list[str], connections: int, duration: float, reply_timeout: float) -> dict[str, int]:
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    rng = random.Random()
    bases = [(52.52 + (rng.random() - 0.5) * 0.3, 13.405 + (rng.random() - 0.5) * 0.5) for _ in tokens]
    stats = {"requests": 0, "acked": 0, "other": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0}
    latencies: list[float] = []
    counter = 0
    start = time.perf_counter()
    deadline = start + duration

    async def connection() -> None:
        nonlocal counter
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            stats["connect"] += 1
            return
        try:
            while time.perf_counter() < deadline:
                i = counter % len(tokens)
                counter += 1
                body = _body(rng, bases[i])
                head = (
                    f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {tokens[i]}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                )
                sent = time.perf_counter()
                try:
                    writer.write(head.encode() + body)
                    await writer.drain()
                except OSError:
                    stats["write"] += 1
                    return
                try:
                    async with asyncio.timeout(reply_timeout):
                        headers = await reader.readuntil(b"\r\n\r\n")
                        length = 0
                        for line in headers.split(b"\r\n")[1:]:
                            name, _, value = line.partition(b":")
                            if name.strip().lower() == b"content-length":
                                length = int(value)
                        if length:
                            await reader.readexactly(length)
                except TimeoutError:
                    stats["timeout"] += 1
                    return
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    stats["read"] += 1
                    return
                if time.perf_counter() > deadline:
                    return  # completed after the end: not counted, as wrk does
                latencies.append(time.perf_counter() - sent)
                stats["requests"] += 1
                status = int(headers.split(b" ", 2)[1])
                stats["acked" if status == 202 else "other"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    latencies.sort()

    def pct(p: float) -> int:
        return int(latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1e6) if latencies else 0

    stats["duration_us"] = int(duration * 1e6)
    stats["p50_us"], stats["p99_us"] = pct(0.50), pct(0.99)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("url")
    parser.add_argument("tokens_file")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    with open(args.tokens_file) as f:
        tokens = [line.strip() for line in f if line.strip()]
    stats = asyncio.run(_run(args.url, tokens, args.connections, args.duration, args.timeout))
    print("BENCH " + " ".join(f"{k}={v}" for k, v in stats.items()), flush=True)


if __name__ == "__main__":
    main()
