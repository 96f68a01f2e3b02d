"""`voicetune serve` under load, and how soon a stream's first audio comes, on f5-tiny and xtts-tiny.

Tiny runs are trained first (2 updates on the demo's espeak-ng corpus), then each is served on a
free port of 127.0.0.1 at its default settings (F5: upstream's 32 sampling steps). Printed per
model:

    throughput   1 and then 4 clients, each sending one request after another (a sentence,
                 streamed wav) for T seconds: requests per second, p50 and p95 latency, errors
    memory       the server's RSS before and after the load (goal: flat within 10%)
    first audio  six sentences streamed: seconds to the first audio byte over seconds to the last
                 (the whole synthesis), median of 3

The first lines compare, for f5-tiny, a request to the warm server (median of 3, alone) with the
wall time of `voicetune synthesize` for the same sentence (a new process that loads the model).
The last line is the larger of the two models' first-audio ratios. Goal: at most 0.3.

    python bench/serve_load.py [--seconds 60] [--nfe 32] [--models f5,xtts]
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
SIX = " ".join(
    [
        "Glue the sheet to the dark blue background, and then wait until it dries completely.",
        "It is easy to tell the depth of a well when you drop a small stone into it.",
        "These days a chicken leg is a rare dish, and the farmers know it very well.",
        "Rice is often served in round bowls, with a little salt and a few green leaves.",
        "The juice of lemons makes fine punch, and the boys drank it on the porch all day.",
        "The box was thrown beside the parked truck, and nobody came to pick it up again.",
    ]
)


def one_request(url: str, text: str = TEXT, timeout: float = 1800) -> tuple[int, float, float | None]:
    """(status, seconds to the last byte, seconds to the first audio byte) of one streamed wav."""
    import httpx

    start = time.perf_counter()
    first = None
    received = 0
    with httpx.stream(
        "POST",
        f"{url}/v1/audio/speech",
        timeout=timeout,
        json={"model": "tts-1", "input": text, "voice": "default", "response_format": "wav"},
    ) as response:
        for part in response.iter_bytes():
            received += len(part)
            if first is None and received > 44:  # past the wav header: audio
                first = time.perf_counter() - start
        status = response.status_code
    return status, time.perf_counter() - start, first


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def load(url: str, clients: int, seconds: float) -> tuple[float, list[float], int]:
    """(elapsed, latencies of the 200s, other outcomes) of `clients` threads for `seconds`."""
    results: list[tuple[int, float, float | None]] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        while time.perf_counter() < deadline:
            try:
                outcome = one_request(url)
            except Exception as err:  # noqa: BLE001 - a broken connection is an error to count
                print(f"client error: {type(err).__name__}: {err}", flush=True)
                outcome = (0, 0.0, None)
            with lock:
                results.append(outcome)

    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    ok = [r[1] for r in results if r[0] == 200]
    return elapsed, ok, len(results) - len(ok)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--nfe", type=int, default=32)
    parser.add_argument("--models", default="f5,xtts")
    args = parser.parse_args()
    sys.path[:0] = [str(REPO_ROOT / "src"), str(REPO_ROOT / "tests")]
    import psutil

    from support.harness import run_cli
    from support.speech_server import SpeechServer, train_tiny_f5, train_tiny_xtts
    from voicetune.synthesis.engine import default_reference

    ratios: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for family in args.models.split(","):
            run = train_tiny_f5(root / family) if family == "f5" else train_tiny_xtts(root / family)
            name = f"{family}-tiny"
            options = ["--nfe", str(args.nfe)] if family == "f5" else []
            if family == "f5":
                ref, ref_text = default_reference(next((run / "checkpoints").glob("step_*")), root / family / "corpus")
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
                    *options,
                    timeout=1800,
                )
                cold_seconds = time.perf_counter() - start
                assert cold.returncode == 0, cold.stderr
            server = SpeechServer(run, *options, "--timeout", "1800", log=root / f"{family}.log")
            try:
                process = psutil.Process(server.proc.pid)
                one_request(server.url)  # warm-up
                if family == "f5":
                    warm = statistics.median(one_request(server.url)[1] for _ in range(3))
                    print(f"{name}: warm request {warm:.2f} s; cold synthesize {cold_seconds:.2f} s")
                    print(f"{name}: warm request / cold synthesize: {warm / cold_seconds:.2f}")
                rss_before = process.memory_info().rss
                for clients in (1, 4):
                    elapsed, latencies, errors = load(server.url, clients, args.seconds)
                    print(
                        f"{name}, {clients} client(s) for {elapsed:.0f} s: {len(latencies)} requests "
                        f"({len(latencies) / elapsed:.3f}/s); latency p50 {percentile(latencies, 0.5):.2f} s, "
                        f"p95 {percentile(latencies, 0.95):.2f} s; errors {errors}",
                        flush=True,
                    )
                rss_after = process.memory_info().rss
                print(
                    f"{name}: server RSS {rss_before / 2**20:.0f} MiB before the load, {rss_after / 2**20:.0f} MiB "
                    f"after ({(rss_after - rss_before) / rss_before * 100:+.1f}%)"
                )
                timings = [one_request(server.url, SIX) for _ in range(3)]
                whole = statistics.median(t[1] for t in timings)
                first = statistics.median(t[2] or t[1] for t in timings)
                ratios[name] = first / whole
                print(
                    f"{name}: six sentences streamed: first audio {first:.2f} s of {whole:.2f} s "
                    f"({ratios[name]:.2f}); health {server.health()['status']}",
                    flush=True,
                )
            finally:
                server.stop()
    worst = max(ratios, key=lambda k: ratios[k])
    print(f"(the larger of {', '.join(f'{k} {v:.2f}' for k, v in ratios.items())}: {worst})")
    print(f"first audio / whole synthesis: {ratios[worst]:.2f}")


if __name__ == "__main__":
    main()
