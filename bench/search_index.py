"""What the full-text index (chat_core.store, message_words) costs a commit: SQLite appends of
batches of chat-like messages with the index and without it, interleaved in one run, medians.

    python bench/search_index.py [--batches 200] [--batch 50] [--runs 7]

Each run writes a fresh file in a temporary folder and removes it; nothing else is started.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from chat_core.store import Message, SQLiteStore

WORDS = (
    "hello there anyone around lunch today meeting moved to three pm thanks see you soon "
    "the build passed again great work coffee later please review my change crème brûlée"
).split()


def text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20)))


async def one_run(folder: Path, indexed: bool, batches: int, batch: int, seed: int) -> float:
    """Seconds per batch committed, median over the run."""
    store = SQLiteStore(str(folder / f"{'fts' if indexed else 'plain'}-{seed}.db"))
    await store.open()
    if not indexed:
        store._next_n = None  # as on a SQLite without FTS5: no index kept
    rng = random.Random(seed)
    times, n = [], 0
    for _ in range(batches):
        msgs = [Message(f"room{rng.randint(1, 5)}", n + i + 1, "user", text(rng), time.time()) for i in range(batch)]
        n += batch
        t0 = time.perf_counter()
        await store.append(msgs)
        times.append(time.perf_counter() - t0)
    await store.close()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain, fts = [], []
        for seed in range(args.runs):  # interleaved, so the machine's noise falls on both
            plain.append(asyncio.run(one_run(Path(tmp), False, args.batches, args.batch, seed)))
            fts.append(asyncio.run(one_run(Path(tmp), True, args.batches, args.batch, seed)))
    p, f = statistics.median(plain), statistics.median(fts)
    print(
        f"batch of {args.batch}: without the index {p * 1e3:.2f} ms, with it {f * 1e3:.2f} ms "
        f"(median of {args.runs} runs of {args.batches} batches); ratio {f / p:.2f}"
    )


if __name__ == "__main__":
    main()
