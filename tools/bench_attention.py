"""Forward + backward time and peak memory of one attention call: baselines vs DropKey backends.

    python tools/bench_attention.py [--shapes vit-s n1k n4k n16k] [--variants ...] [--repeats 10]
                                    [--threads 2] [--clock wall|cpu] [--out-dir DIR]

Every (shape, variant) runs in its own subprocess (so peak RSS is its own), warms up once, then
takes the median of ``--repeats`` runs. Ratios are against SDPA without dropout measured in the
same invocation. ``--clock cpu`` (process CPU time) is steadier on a machine shared with other
jobs when ``--threads 1``. Writes DIR/bench_attention.json and DIR/bench_attention.md atomically.
Materialised variants whose N x N tensors would exceed ``--max-memory-gb`` are skipped, and
their peak is extrapolated quadratically from the largest measured shape.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.common.files import write_atomic, write_json_atomic  # noqa: E402

SHAPES = {  # name: (B, H, N, D)
    "vit-s": (32, 6, 197, 64),
    "n1k": (2, 8, 1024, 32),
    "n4k": (2, 8, 4096, 32),
    "n16k": (1, 8, 16384, 32),
}
# Variant: (description, bytes per logit it materialises; 0 = O(N) memory).
VARIANTS = {
    "sdpa": ("SDPA, no dropout", 0),
    "eager": ("eager matmul-softmax-matmul, no dropout", 12),
    "attn-drop-eager": ("attention dropout, eager nn.Dropout", 20),
    "attn-drop-sdpa": ("attention dropout, SDPA dropout_p", 16),
    "paper-snippet": ("paper snippet attn + bernoulli(ones*p) * -1e12", 24),
    "dropkey-reference": ("DropKey, reference (torch generator mask + SDPA)", 14),
    "dropkey-hash": ("DropKey, hash mask materialised + SDPA", 13),
    "dropkey-auto": ("DropKey, default backend (here: chunked flash + compiled hash)", 0),
    "dropkey-chunked-eager": ("DropKey, chunked flash + eager hash (DROPKEY_COMPILE_HASH=0)", 0),
    "dropkey-column": ("column-wise DropKey (HiddenKey): one mask per batch, head and key", 0),
    "drophead": ("DropHead: whole heads dropped at the output", 0),
}


def attention_step(variant: str, q, k, v, p: float):
    """A closure running forward + backward of ``variant`` once."""
    import torch
    import torch.nn.functional as F

    from dropkey_core import dropkey_attention

    scale = q.shape[-1] ** -0.5

    def eager(dropout=None, bias=None):
        logits = (q * scale) @ k.transpose(-2, -1)
        weights = (logits if bias is None else logits + bias).softmax(-1)
        return (weights if dropout is None else dropout(weights)) @ v

    forwards = {
        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v),
        "eager": eager,
        "attn-drop-eager": lambda: eager(dropout=lambda w: F.dropout(w, p)),
        "attn-drop-sdpa": lambda: F.scaled_dot_product_attention(q, k, v, dropout_p=p),
        "paper-snippet": lambda: eager(
            bias=torch.bernoulli(torch.ones(*q.shape[:-1], k.shape[-2]) * p) * -1e12),
        "dropkey-reference": lambda: dropkey_attention(q, k, v, p, backend="reference"),
        "dropkey-hash": lambda: dropkey_attention(q, k, v, p, backend="hash"),
        "dropkey-auto": lambda: dropkey_attention(q, k, v, p),
        "dropkey-chunked-eager": lambda: dropkey_attention(q, k, v, p, backend="chunked"),
        "dropkey-column": lambda: dropkey_attention(q, k, v, p, method="dropkey_column"),
        "drophead": lambda: dropkey_attention(q, k, v, p, method="drophead"),
    }
    if variant == "dropkey-chunked-eager":
        from dropkey_core.hash_mask import use_compiled_hash
        use_compiled_hash(False)

    def step():
        forwards[variant]().sum().backward()
        for t in (q, k, v):
            t.grad = None
    return step


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def worker(args) -> dict:
    """Time one (shape, variant) in this process; print the result as JSON."""
    import torch
    torch.manual_seed(0)
    q, k, v = (torch.randn(*SHAPES[args.shape], requires_grad=True) for _ in range(3))
    step = attention_step(args.variant, q, k, v, args.drop_ratio)
    base = rss_mb()
    start = time.perf_counter()
    step()  # warm-up (and compilation, for the compiled variant)
    warmup = time.perf_counter() - start
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times = []
    for _ in range(args.repeats):
        start = clock()
        step()
        times.append(clock() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(median_s=statistics.median(times), times_s=times, warmup_s=warmup,
                peak_extra_mb=peak - base)


def run_variant(args, shape: str, variant: str) -> dict:
    batch, heads, tokens, _ = SHAPES[shape]
    logit_gb = batch * heads * tokens * tokens * VARIANTS[variant][1] / 2 ** 30
    if logit_gb > args.max_memory_gb:
        return dict(skipped=f"needs about {logit_gb:.0f} GB of N x N tensors")
    command = [sys.executable, __file__, "--worker", "--shape", shape, "--variant", variant,
               "--repeats", str(args.repeats), "--clock", args.clock,
               "--drop-ratio", str(args.drop_ratio)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        return dict(skipped="failed: " + (done.stderr.strip().splitlines() or ["?"])[-1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def extrapolate_peaks(results: dict) -> None:
    """Quadratic estimate of skipped variants' peak memory from the largest measured shape."""
    for shape, rows in results.items():
        batch, heads, tokens, _ = SHAPES[shape]
        for variant, row in rows.items():
            if "skipped" not in row:
                continue
            measured = [(s, results[s][variant]) for s in results if s != shape
                        and "peak_extra_mb" in results[s].get(variant, {})]
            if not measured:
                continue
            source, source_row = max(measured, key=lambda item: SHAPES[item[0]][2])
            b, h, n, _ = SHAPES[source]
            factor = (batch * heads * tokens ** 2) / (b * h * n ** 2)
            row["peak_extra_mb_extrapolated"] = source_row["peak_extra_mb"] * factor
            row["extrapolated_from"] = source


def markdown(results: dict, args) -> str:
    shapes = list(results)
    header = " | ".join(f"{s} {'x'.join(map(str, SHAPES[s]))}" for s in shapes)
    lines = [f"Forward + backward of one attention call, p = {args.drop_ratio}, "
             f"{args.threads} thread(s), {args.clock} clock, median of {args.repeats}. "
             "Cells: time ratio to SDPA without dropout (same run) / peak extra memory.", "",
             f"| variant | {header} |", "|---" * (len(shapes) + 1) + "|"]
    for variant in args.variants:
        cells = []
        for shape in shapes:
            row, base = results[shape].get(variant, {}), results[shape].get("sdpa", {})
            if "median_s" in row and "median_s" in base:
                cells.append(f"{row['median_s'] / base['median_s']:.2f}x / "
                             f"{row['peak_extra_mb']:.0f} MB")
            elif "peak_extra_mb_extrapolated" in row:
                cells.append(f"skipped / ~{row['peak_extra_mb_extrapolated'] / 1024:.0f} GB "
                             f"(extrapolated from {row['extrapolated_from']})")
            else:
                cells.append(row.get("skipped", "-"))
        lines.append(f"| {VARIANTS[variant][0]} | " + " | ".join(cells) + " |")
    seconds = " | ".join(f"{results[s].get('sdpa', {}).get('median_s', float('nan')):.3f}"
                         for s in shapes)
    lines.append(f"| SDPA seconds | {seconds} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--drop-ratio", type=float, default=0.1)
    parser.add_argument("--max-memory-gb", type=float, default=8.0)
    parser.add_argument("--out-dir", default=str(REPO / "work_dirs" / "bench_attention"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if "sdpa" not in args.variants:
        args.variants.insert(0, "sdpa")
    results = {}
    for shape in args.shapes:
        results[shape] = {}
        for variant in args.variants:
            results[shape][variant] = row = run_variant(args, shape, variant)
            shown = (f"{row['median_s']:.3f} s, +{row['peak_extra_mb']:.0f} MB"
                     if "median_s" in row else row["skipped"])
            print(f"{shape:6s} {variant:26s} {shown}", flush=True)
    extrapolate_peaks(results)
    out_dir = Path(args.out_dir)
    conditions = dict(threads=args.threads, clock=args.clock, repeats=args.repeats,
                      drop_ratio=args.drop_ratio, load_average=os.getloadavg())
    write_json_atomic(out_dir / "bench_attention.json",
                      dict(conditions=conditions, shapes=SHAPES, results=results))
    table = markdown(results, args)
    write_atomic(out_dir / "bench_attention.md", table.encode())
    print(table)


if __name__ == "__main__":
    main()
