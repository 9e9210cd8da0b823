"""Sentences per second of text-minilm (the real all-MiniLM-L6-v2) on this machine, batched and one
sentence at a time, measured in the same run through the extractor's own code path.

    python bench/extract/lexical_speed.py [--sentences 256] [--batch-tokens 4096] [--threads 0]
"""
from __future__ import annotations

import os
import platform
import random
import time

import click

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = ("I can't believe it this is wonderful news where did you put my keys "
         "she said nothing and left the room we are so tired of waiting honestly").split()


def sentences(n: int, seed: int = 0) -> list[str]:
    """`n` English sentences of 4-40 words (MER-like transcript lengths)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 40))) for _ in range(n)]


def timed(extractor, payloads, batches) -> float:
    start = time.perf_counter()
    for batch in batches:
        extractor.extract_batch([None] * len(batch), [payloads[i] for i in batch])
    return time.perf_counter() - start


def token_batches(payloads, budget: int) -> list[list[int]]:
    """Length-sorted batches within `budget` tokens, as the runner forms them."""
    order = sorted(range(len(payloads)), key=lambda i: len(payloads[i]["input_ids"]))
    batches, current, total = [], [], 0
    for i in order:
        cost = len(payloads[i]["input_ids"])
        if current and total + cost > budget:
            batches.append(current)
            current, total = [], 0
        current.append(i)
        total += cost
    return batches + [current] if current else batches


@click.command()
@click.option("--sentences", "n", default=256, show_default=True)
@click.option("--batch-tokens", default=4096, show_default=True)
@click.option("--threads", default=0, help="torch intra-op threads (0: torch's default).")
def main(n, batch_tokens, threads):
    import torch

    from extract.core import base
    from manifests.table import Clip

    if threads:
        torch.set_num_threads(threads)
    extractor = base.build("text-minilm", {"device": "cpu"})
    extractor.setup()
    payloads = [extractor.prepare(Clip(id=str(i), split="b", text=t), None) for i, t in enumerate(sentences(n))]
    tokens = sum(len(p["input_ids"]) for p in payloads)
    timed(extractor, payloads, [[0], [1, 2]])  # warm-up
    batched = timed(extractor, payloads, token_batches(payloads, batch_tokens))
    single = timed(extractor, payloads, [[i] for i in range(n)])
    click.echo(f"text-minilm on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
               f"torch {torch.__version__}, {torch.get_num_threads()} threads; {n} sentences, "
               f"{tokens / n:.1f} tokens on average")
    click.echo(f"batched ({batch_tokens} tokens/batch): {n / batched:7.1f} sentences/s")
    click.echo(f"one at a time:                {n / single:7.1f} sentences/s")
    click.echo(f"ratio batched / one at a time: {single / batched:.2f}")


if __name__ == "__main__":
    main()
