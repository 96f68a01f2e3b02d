"""`voicetune serve` under load: N clients for T seconds against f5-tiny, and a warm request
against a cold `voicetune synthesize`, measured in one run.

A tiny run is trained first (2 updates on the demo's espeak-ng corpus), then served on a free
port of 127.0.0.1. N client threads each send one request after another (the same sentence,
streamed wav) for T seconds. Printed:

    requests per second, p50 and p95 latency, p50 time to the first audio byte
    errors (anything but 200, apart from 429s, which are counted on their own)
    the server's RSS before and after the load (goal: flat within 10%)

The last line is the latency of one request to the warm server (median of 3, alone) over the
wall time of `voicetune synthesize` for the same sentence (a new process that loads the model):
what keeping the model loaded buys. Goal: at most 0.1.

    python bench/serve_load.py [--clients 8] [--seconds 60] [--nfe 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TEXT = "The birch canoe slid on the smooth planks, and the juice of lemons makes fine punch."


def one_request(url: str, model: str, timeout: float = 600) -> tuple[int, float, float | None]:
    """(status, seconds to the last byte, seconds to the first audio byte) of one streamed wav."""
    import httpx

    start = time.perf_counter()
    first = None
    with httpx.stream(
        "POST",
        f"{url}/v1/audio/speech",
        timeout=timeout,
        json={"model": model, "input": TEXT, "voice": "default", "response_format": "wav"},
    ) as response:
        for part in response.iter_bytes():
            if first is None and part:
                first = time.perf_counter() - start
        status = response.status_code
    return status, time.perf_counter() - start, first


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--nfe", type=int, default=32)
    args = parser.parse_args()
    sys.path[:0] = [str(REPO_ROOT / "src"), str(REPO_ROOT / "tests")]
    import psutil

    from support.harness import run_cli
    from support.speech_server import MODEL, SpeechServer, train_tiny_f5
    from voicetune.synthesis.engine import default_reference

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = train_tiny_f5(root)
        ref, ref_text = default_reference(next((run / "checkpoints").glob("step_*")), root / "corpus")
        start = time.perf_counter()
        cold = run_cli(
            "synthesize",
            "--checkpoint",
            run,
            "--text",
            TEXT,
            "--ref",
            ref,
            "--ref-text",
            ref_text,
            "--out",
            root / "cold.wav",
            "--nfe",
            str(args.nfe),
            timeout=1800,
        )
        cold_seconds = time.perf_counter() - start
        assert cold.returncode == 0, cold.stderr

        server = SpeechServer(run, "--nfe", str(args.nfe), log=root / "server.log")
        try:
            process = psutil.Process(server.proc.pid)
            one_request(server.url, MODEL)  # warm-up
            warm = statistics.median(one_request(server.url, MODEL)[1] for _ in range(3))
            rss_before = process.memory_info().rss

            results: list[tuple[int, float, float | None]] = []
            lock = threading.Lock()
            deadline = time.perf_counter() + args.seconds

            def client() -> None:
                while time.perf_counter() < deadline:
                    try:
                        outcome = one_request(server.url, MODEL)
                    except Exception as err:  # noqa: BLE001 - a broken connection is an error to count
                        print(f"client error: {type(err).__name__}: {err}", flush=True)
                        outcome = (0, 0.0, None)
                    with lock:
                        results.append(outcome)

            began = time.perf_counter()
            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - began
            rss_after = process.memory_info().rss
            health = server.health()
        finally:
            server.stop()

    ok = [r for r in results if r[0] == 200]
    refused = sum(1 for r in results if r[0] == 429)
    errors = len(results) - len(ok) - refused
    latencies = [r[1] for r in ok]
    firsts = [r[2] for r in ok if r[2] is not None]
    print(
        f"{args.clients} clients for {elapsed:.0f} s, f5-tiny at {args.nfe} steps: {len(ok)} requests "
        f"({len(ok) / elapsed:.2f}/s); latency p50 {percentile(latencies, 0.5):.2f} s, p95 "
        f"{percentile(latencies, 0.95):.2f} s; first audio byte p50 {percentile(firsts, 0.5):.2f} s"
    )
    print(f"errors: {errors}; 429s: {refused}; server: {health['done']} done, {health['failed']} failed")
    print(
        f"server RSS: {rss_before / 2**20:.0f} MiB before, {rss_after / 2**20:.0f} MiB after "
        f"({(rss_after - rss_before) / rss_before * 100:+.1f}%)"
    )
    print(f"warm request {warm:.2f} s; cold synthesize {cold_seconds:.2f} s")
    print(f"warm request / cold synthesize: {warm / cold_seconds:.2f}")


if __name__ == "__main__":
    main()
