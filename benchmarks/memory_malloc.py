"""Is `evaluate`'s memory growth in `netfix bench memory` netfix's or the C allocator's? Measures evaluate over the
bench's generated memmap dataset at N images in a fresh process, as the bench does (``_measure``). Run it twice per N,
with and without glibc's fixed mmap threshold:

    python benchmarks/memory_malloc.py 10000 50000
    MALLOC_MMAP_THRESHOLD_=65536 python benchmarks/memory_malloc.py 10000 50000

What it found (docs/results.md, "Any data"): evaluate kept each batch's (1024, K) logits until a final concatenation;
those small live blocks, interleaved with the freed 12 MB batch buffers, kept glibc's heap from being reused, and
memory grew linearly with N (49 -> 231 MB from 10k to 200k). evaluate now reduces each batch to a prediction (and,
when an attack runs, a confidence and a loss) written into buffers allocated once, and reads a streamed set into one
reused batch buffer: 25 -> 28 MB.
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
from pathlib import Path

import netfix
from netfix.bench import memory

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        netfix.save(netfix.models.build("mlp", (3, 32, 32), 10, hidden=(256,), seed=0), folder / "model")
        for n in map(int, sys.argv[1:]):
            x, y = memory._write(folder, n)
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                got = pool.map(memory._measure, [("evaluate", "stream", str(x), str(y), n)])[0]
            print(f"n={n} evaluate stream: peak {got['peak_mb']:.1f} MB, {got['seconds']:.1f} s", flush=True)
