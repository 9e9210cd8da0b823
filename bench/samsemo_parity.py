"""E2E-L against SAMSEMO's own code (a checkout of samsungnlp/samsemo): the same network, the same
inputs, and the speed of training on the cache, on a small SAMSEMO-layout corpus this bench writes.

    python bench/samsemo_parity.py --samsemo PATH [--clips 64] [--epochs 3] [--width-divisor 4] [--workdir DIR]
    make bench-samsemo SAMSEMO=PATH

1. The corpus: the demo corpus (manifests.demo) rewritten as SAMSEMO's release (scene folders of
   audio.wav and 2 fps image_<i>.jpg, meta.pkl, split lists; worried becomes fear, so those scenes
   have none of the classes), two probe scenes (15 s: more than 32 pieces; 0.3 s: one), then
   `python -m extract` of face-crops and e2el-spectrogram (float16 as cached by default, and float32).
2. Inputs: prep_aud.py's Specgram on every scene's audio.wav against the cached pieces.
3. Network: MME2E (src/model_E2E.py) and our e2el given the same weights (mapped in
   bench/samsemo_reference.py) and the same cached crops and pieces and random text vectors:
   logits in eval mode, in training mode (every dropout at 0 on both sides: its masks are random),
   and in eval mode after one Adam step on the same batch; published widths and narrower ones.
4. Speed: `fuse.train --model e2el` (5 folds x 1 seed as one batched model) against run.py's
   Lightning loop on the same cached crops and pieces (V and A), same widths and epochs.

Exits 1 when the network or input parity does not hold. Needs `lightning` and `tabulate` (run.py's
imports; `make bench-samsemo` installs them); see bench/samsemo_reference.py for what is stubbed.
"""
from __future__ import annotations

import contextlib
import json
import logging
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import click
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import samsemo_reference as reference  # noqa: E402  (bench/, beside this file)

DATASET = "samsemo-bench"
# demo emotion -> SAMSEMO emotion name in meta.pkl (worried: fear, a class run.py drops)
EMOTION = {"neutral": "neutral", "angry": "anger", "happy": "happiness", "sad": "sadness", "surprise": "surprise",
           "worried": "fear"}
CHANNELS = (64, 64, 64, 128, 256, 512)   # E2E-L's CNN (ours: --channels)
FLOAT32_TOLERANCE = 1e-5   # max |difference| / max |value|: float32 rounding
FLOAT16_TOLERANCE = 2 ** -10   # the float16 cache: twice float16's relative rounding
LOGIT_TOLERANCE = 1e-4     # max |difference| / max(1, max |logit|): float32 rounding through the network
# after an Adam step: its first update is lr g / (|g| + 1e-8), so gradients that differ by float32
# rounding where |g| is near 1e-8 move their weights by different fractions of lr
STEP_TOLERANCE = 1e-3


def run(args, **kwargs):
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, **kwargs)
    if proc.returncode:
        raise click.ClickException(f"{' '.join(map(str, args[:3]))} failed: {proc.stderr.strip()[-1500:]}")
    return proc


def build_corpus(work: Path, n_clips: int) -> Path:
    """The demo corpus as a SAMSEMO release under work/samsemo: per demo emotion, every 5th clip
    valid, the next test, the rest train; probe scenes `probe-long`, `probe-short` (split probe)."""
    from extract.core.media import decode_streams
    from manifests import load_manifest

    run(["-m", "manifests.demo", "--out", work / "demo", "--clips", n_clips])
    clips = [c for c in load_manifest("demo", root=work / "demo") if c.label]
    root, meta, splits, audio = work / "samsemo", {}, {"train": [], "valid": [], "test": [], "probe": []}, []
    for emotion in EMOTION:
        for i, clip in enumerate(c for c in clips if c.label == emotion):
            media = decode_streams(clip.media, audio=True, fps=2.0)
            write_scene(root / clip.id, media.audio, media.frames)
            meta[clip.id] = {"label": EMOTION[emotion], "text": clip.text}
            splits[("valid", "test", "train", "train", "train")[i % 5]].append(clip.id)
            audio.append(media.audio)
    frames = media.frames[:1]
    for name, samples in (("probe-long", np.concatenate(audio)[:15 * 16000]), ("probe-short", audio[0][:4800])):
        write_scene(root / name, samples, frames)
        meta[name] = {"label": None, "text": None}
        splits["probe"].append(name)
    for split, ids in splits.items():
        (root / f"{split}_split_EN.txt").write_text("".join(f"{i}\n" for i in sorted(ids)))
    with open(root / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)
    return root


def write_scene(folder: Path, audio: np.ndarray, frames: np.ndarray):
    """A SAMSEMO scene: audio.wav (16 kHz, 16-bit PCM) and image_<i>.jpg."""
    import soundfile
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    soundfile.write(folder / "audio.wav", audio, 16000, subtype="PCM_16")
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"image_{i}.jpg", quality=95)


def extract(root: Path, cache: Path):
    run(["-m", "extract", "--dataset", DATASET, "--layout", "samsemo", "--root", root, "--cache", cache,
         "--features", "face-crops,e2el-spectrogram,e2el32=e2el-spectrogram", "--set", "e2el32.store_dtype=float32",
         "--workers", 2, "--quiet"])


def input_parity(root: Path, cache: Path) -> tuple[list[list], bool]:
    """prep_aud.py's pieces of every scene against the cached ones: table rows, whether they agree."""
    from cache import open_clips, open_feature

    ids = open_clips(DATASET, cache).ids
    worst = {"e2el32": 0.0, "e2el-spectrogram": 0.0}
    counts_agree, probes = True, []
    for scene in ids:
        ref, length = reference.reference_pieces(root, scene)
        for name in worst:
            feat = open_feature(DATASET, name, cache)
            ours = feat.array(ids=[scene])[0].astype(np.float32)
            worst[name] = max(worst[name], float(np.abs(ours - ref).max() / np.abs(ref).max()))
        n = int(open_feature(DATASET, "e2el32", cache).array("n_pieces", ids=[scene])[0])
        counts_agree &= n == min(length, 32)
        if scene.startswith("probe"):
            probes.append(f"{scene}: {length} pieces there, {n} here")
    ok32, ok16 = worst["e2el32"] <= FLOAT32_TOLERANCE, worst["e2el-spectrogram"] <= FLOAT16_TOLERANCE
    rows = [[f"pieces, float32 cache ({len(ids)} scenes)", f"{worst['e2el32']:.1e}", f"<= {FLOAT32_TOLERANCE:.0e}",
             _yes(ok32)],
            [f"pieces, float16 cache (the default; {len(ids)} scenes)", f"{worst['e2el-spectrogram']:.1e}",
             f"<= {FLOAT16_TOLERANCE:.1e}", _yes(ok16)],
            ["piece counts (ours capped at 32, as MME2E caps them)", "; ".join(probes), "equal", _yes(counts_agree)]]
    return rows, ok32 and ok16 and counts_agree


def _yes(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def scored_batch(cache: Path, n: int, max_pieces: int | None, max_crops: int | None, seed: int = 0):
    """n test clips' cached blocks [1, n, ...] (float32 pieces, crops, masks), random 768-d text
    vectors, their 0/1 labels; counts cut to max_pieces / max_crops (the published widths' cost)."""
    import torch

    from fuse.problem import load_problem

    problem = load_problem(DATASET, [("A", "e2el32#pieces"), ("A", "e2el32#n_pieces"), ("V", "face-crops#crops"),
                                     ("V", "face-crops#mask")], root=cache)
    rows = problem.index("test", labelled_only=True)[:n]
    pieces, count, crops, mask = (torch.as_tensor(b[rows]).float()[None] for b in problem.blocks)
    if max_pieces:
        count = count.clamp(max=max_pieces)
    if max_crops:
        mask = mask * (torch.arange(mask.shape[-1]) < max_crops)
    text = torch.randn(1, len(rows), 768, generator=torch.Generator().manual_seed(seed))
    return [pieces, count, text, crops, mask], torch.as_tensor(problem.labels[rows]).float()


def network_parity(cache: Path, modalities: str, divisor: int, n: int, limits) -> list:
    """MME2E and our e2el with MME2E's weights on the same batch: [(check, max |diff|, max |logit|,
    tolerance)]."""
    import torch
    import torch.nn.functional as F

    from fuse.ensemble import Ensemble
    from fuse.models import build, make_config

    every, labels = scored_batch(cache, n, *limits)
    letters = {"a": "A", "t": "L", "v": "V"}
    order = [letters[m] for m in "atv" if m in modalities]  # ours: A, L, V as fuse.specs orders them
    blocks = [b for b, m in zip(every, ["A", "A", "L", "V", "V"]) if m in order]
    shapes = [tuple(b.shape[2:]) for b in blocks]
    torch.manual_seed(0)
    ref = reference.without_dropout(reference.build_mme2e(modalities, range(5), divisor))
    channels = tuple(c // divisor for c in CHANNELS)
    ours = build("e2el", make_config("e2el", channels=channels, dropout=0.0), shapes,
                 [m for m in ["A", "A", "L", "V", "V"] if m in order], 5, multi_label=True)
    ours.load_state_dict(reference.our_state(ref, order, len(channels) - 1))
    ens = Ensemble(lambda e: ours, 1, torch.device("cpu"))
    ref_inputs = reference.reference_inputs(*every)
    out = []
    for check, train in (("eval-mode logits", False), ("train-mode logits (dropout 0)", True)):
        ref.train(train), ens.net.train(train)
        with torch.no_grad():
            theirs, mine = ref(*ref_inputs)[0], ens.net(blocks)[0][0]
        out.append((check, float((theirs - mine).abs().max()), float(theirs.abs().max()), LOGIT_TOLERANCE))
    ref.train(), ens.net.train()
    optimiser = torch.optim.Adam(ref.parameters(), lr=1e-4, weight_decay=1e-6)  # run.py's configure_optimizers
    F.binary_cross_entropy_with_logits(ref(*ref_inputs)[0], labels).backward()
    optimiser.step()
    ours_step = ens.optimizer(1e-4, 1e-6)
    zeros = torch.zeros(1, labels.shape[0])
    ens.loss(blocks, labels[None], zeros, torch.ones_like(zeros), zeros).backward()
    ours_step.step()
    ref.eval(), ens.net.eval()
    with torch.no_grad():
        theirs, mine = ref(*ref_inputs)[0], ens.net(blocks)[0][0]
    out.append(("eval-mode logits after one Adam step (BCE, lr 1e-4)", float((theirs - mine).abs().max()),
                float(theirs.abs().max()), STEP_TOLERANCE))
    return out


def speed(checkout: Path, cache: Path, work: Path, epochs: int, divisor: int) -> tuple[list[list], dict]:
    """fuse.train's e2el and run.py's loop on the same cached inputs: table rows, run.py's figures.
    An epoch's seconds: run.py's timed by a callback; ours the difference between a run of `epochs`
    and one of 1 (what an epoch adds, the run's fixed costs left out as the callback leaves them)."""
    ours = [train_ours(cache, work / f"e2el-{n}", n, divisor) for n in (1, epochs)]
    m = ours[1]
    data = write_reference_pickle(cache, work / "samsemo-bench.pkl")
    with open(work / "run.py.log", "w") as log, contextlib.redirect_stdout(log), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("lightning").setLevel(logging.ERROR)
        theirs = reference.train_reference(checkout, data, epochs, 16, divisor, work / "checkpoints")
    n, folds = theirs["train"], m["config"]["train"]["folds"]
    per_epoch = (m["seconds"] - ours[0]["seconds"]) / (epochs - 1)
    share = theirs["scoring"] / theirs["per_epoch"]
    return [["SAMSEMO run.py (Lightning, one model)", n, theirs["epochs"], f"{theirs['seconds']:.1f}",
             f"{theirs['per_epoch']:.1f} ({share:.0%} its epoch-end F1 and threshold search)",
             f"{n / theirs['per_epoch']:.1f}",
             f"{theirs['valid_f1']:.3f}", f"{theirs['test_f1']:.3f}"],
            [f"fuse.train --model e2el ({folds} folds as one batched model)", n, epochs, f"{m['seconds']:.1f}",
             f"{per_epoch:.1f}", f"{n * (folds - 1) / per_epoch:.1f}",
             f"{m['valid']['weighted_f1']['mean']:.3f}", f"{m['test']['weighted_f1']['mean']:.3f}"]], theirs


def train_ours(cache: Path, out: Path, epochs: int, divisor: int) -> dict:
    """`fuse.train --model e2el` on V and A without early stopping: its metrics.json."""
    channels = ",".join(str(c // divisor) for c in CHANNELS)
    run(["-m", "fuse.train", "--cache", cache, "--dataset", DATASET, "--model", "e2el", "--modalities", "V,A",
         "--channels", channels, "--epochs", epochs, "--patience", 0, "--test-splits", "valid,test",
         "--out", out, "--quiet"])
    return json.loads((out / "metrics.json").read_text())


def write_reference_pickle(cache: Path, path: Path) -> Path:
    """The cached crops and pieces of train, valid and test in prep_raw.py's pickle format (text:
    zeros, unused with V and A); labels from the clip table (all-zero rows for fear-only scenes)."""
    import torch

    from fuse.problem import load_problem

    problem = load_problem(DATASET, [("A", "e2el-spectrogram#pieces"), ("A", "e2el-spectrogram#n_pieces"),
                                     ("V", "face-crops#crops"), ("V", "face-crops#mask")], root=cache)
    data = {}
    for split in ("train", "valid", "test"):
        rows = problem.index(split, labelled_only=True)
        pieces, count, crops, mask = (torch.as_tensor(b[rows]).float()[None] for b in problem.blocks)
        _, audio, spec_lens, faces, imgs_lens = reference.reference_inputs(pieces, count, torch.zeros(1, len(rows), 768),
                                                                           crops, mask)
        data[split] = {"text": torch.zeros(len(rows), 1, 768), "audio": audio, "spec_lens": spec_lens.tolist(),
                       "vision": faces, "imgs_lens": imgs_lens.tolist(), "id": list(problem.ids[rows]),
                       "labels": problem.labels[rows].astype(int).tolist()}
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return path


def network_rows(cache: Path, divisor: int) -> tuple[list[list], bool]:
    """network_parity at the published widths (all modalities; 3 clips, few items: the CPU's cost)
    and at 1/divisor (all modalities and each alone): table rows, whether every check holds."""
    checks = [("tav", 1, 3, (3, 4)), ("tav", divisor, 6, (None, None)), ("v", divisor, 6, (None, None)),
              ("a", divisor, 6, (None, None)), ("t", divisor, 6, (None, None))]
    rows, every_ok = [], True
    for modalities, d, n, limits in checks:
        widths = "published (64-512)" if d == 1 else f"1/{d} ({64 // d}-{512 // d})"
        items = "at most 3 pieces, 4 crops" if limits[0] else "as cached"
        for check, diff, scale, tolerance in network_parity(cache, modalities, d, n, limits):
            ok = diff <= tolerance * max(1.0, scale)
            every_ok &= ok
            rows.append([modalities.upper(), widths, f"{n} ({items})", check, f"{diff:.1e}", f"{scale:.2f}",
                         f"<= {tolerance:.0e} x max(1, logit)", _yes(ok)])
    return rows, every_ok


def report(stubbed, inputs, net_rows, speed_rows, patience, divisor: int, epochs: int):
    click.echo(f"stubbed imports: {'; '.join(stubbed)}\n")
    click.echo("**Inputs**: prep_aud.py's Specgram (torchaudio reproduced) against e2el-spectrogram\n")
    click.echo(table(["what", "max |difference| / max |value|", "holds when", "holds"], inputs))
    click.echo("\n**Network**: SAMSEMO's MME2E against our e2el with its weights\n")
    click.echo(table(["modalities", "CNN widths", "clips", "check", "max abs difference", "max abs logit",
                      "holds when", "holds"], net_rows))
    click.echo(f"\n**Training on the cache** (V and A, CNN at 1/{divisor} of the published widths, {epochs} epochs, "
               f"batch 16, lr 1e-4; Lightning's EarlyStopping default patience: {patience})\n")
    click.echo(table(["loop", "training clips", "epochs", "seconds", "s per epoch", "clips trained per s",
                      "valid weighted F1", "test weighted F1"], speed_rows))


def table(header: list[str], rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


@click.command()
@click.option("--samsemo", "checkout", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A checkout of samsungnlp/samsemo.")
@click.option("--clips", default=64, show_default=True, help="Demo clips the corpus is made from.")
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(2),
              help="Epochs of the speed comparison.")
@click.option("--width-divisor", "divisor", type=click.Choice(["2", "4", "8"]), default="4", show_default=True,
              help="CNN widths of the speed comparison and the narrow parity checks: 1/N of E2E-L's.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), help="Keep the corpus, cache and runs here.")
def main(checkout, clips, epochs, divisor, workdir):
    """Check E2E-L's network and inputs against SAMSEMO's code, and time training on the cache."""
    divisor = int(divisor)
    if not (checkout / "src" / "model_E2E.py").is_file():
        raise click.UsageError(f"{checkout}: no src/model_E2E.py; give a checkout of samsungnlp/samsemo")
    missing = reference.missing_requirements()
    if missing:
        raise click.UsageError(f"run.py needs {', '.join(m.partition('.')[0] for m in missing)}: "
                               "pip install lightning tabulate (make bench-samsemo installs them)")
    stubbed = reference.install_stubs(checkout.resolve())
    warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors")  # nn.TransformerEncoder's
    with contextlib.ExitStack() as stack:
        work = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="samsemo-bench-")))
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()

        def stage(what):
            click.echo(f"[{time.perf_counter() - started:5.0f} s] {what}", err=True)

        stage("writing the corpus")
        root, cache = build_corpus(work, clips), work / "cache"
        stage("extracting face-crops and e2el-spectrogram")
        extract(root, cache)
        stage("input parity")
        inputs, inputs_ok = input_parity(root, cache)
        stage("network parity")
        net_rows, net_ok = network_rows(cache, divisor)
        stage("training: fuse.train, then run.py's loop")
        speed_rows, theirs = speed(checkout, cache, work, epochs, divisor)
    report(stubbed, inputs, net_rows, speed_rows, theirs["patience_default"], divisor, epochs)
    if not (inputs_ok and net_ok):
        click.echo("\nparity does NOT hold (rows marked NO)", err=True)
        sys.exit(1)
    click.echo("\nparity holds: same inputs, same network")


if __name__ == "__main__":
    main()
