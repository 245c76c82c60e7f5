"""Inference throughput (patterns/s) of the PINN, N=64, gridsize 1 and 2, on a simulated scan.

Two tables:

* ``reconstruct``: the whole inference (gather, network, stitching) through
  :func:`ptychopinn.workflows.infer.reconstruct`, per gridsize, batch size and variant:
  ``before`` (NCHW network, stitching one network batch at a time: the previous code path),
  ``channels_last`` (network in channels-last) and ``after`` (channels-last plus stitching
  in chunks of >= 256 patches: the default). ``bf16`` adds bfloat16 autocast (``--bf16``).
* ``network``: the generator alone on one batch: ``eager`` (NCHW), ``channels_last``,
  ``jit_frozen`` (TorchScript trace, frozen and optimised for inference: oneDNN weight
  prepacking, conv+ReLU fusion) and, with ``--compile``, ``torch.compile`` (inductor).

Each figure is the best of ``--repeats`` runs after a warm-up. The weights are random
(throughput does not depend on them) unless ``--model_path`` names a trained archive.

    python benchmarks/inference_speed.py                      # defaults: threads as torch has
    python benchmarks/inference_speed.py --threads 1 --batch_sizes 64 --gridsizes 1
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time

import numpy as np
import torch

from ptychopinn.benchmarking.runtime import quiet_benchmark_process
from ptychopinn.config import ModelConfig
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.model.pinn import PtychoPINN
from ptychopinn.workflows.infer import reconstruct

RECONSTRUCT_VARIANTS = {
    "before": dict(channels_last_format=False, stitch_batch_size=1),
    "channels_last": dict(channels_last_format=True, stitch_batch_size=1),
    "after": dict(channels_last_format=True),
    "bf16": dict(channels_last_format=True, precision="bf16"),
}


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN primitive creation, first-touch allocations
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def make_model(args: argparse.Namespace, gridsize: int, probe: np.ndarray) -> PtychoPINN:
    if args.model_path:
        from ptychopinn.bundle import load_model

        model = load_model(args.model_path).model
        if model.config.gridsize != gridsize:
            raise SystemExit(
                f"--model_path has gridsize {model.config.gridsize}; pass --gridsizes "
                f"{model.config.gridsize}"
            )
        return model.eval()
    torch.manual_seed(0)
    cfg = ModelConfig(N=64, gridsize=gridsize, n_filters_scale=args.n_filters_scale)
    return PtychoPINN(cfg, probe, 1.0).eval()


def reconstruct_rows(args, data) -> list[dict]:
    rows = []
    variants = [v for v in RECONSTRUCT_VARIANTS if v != "bf16" or args.bf16]
    for gridsize in args.gridsizes:
        model = make_model(args, gridsize, data.probe)
        reference = None
        for batch in args.batch_sizes:
            for name in variants:
                kw = RECONSTRUCT_VARIANTS[name]
                out = {}

                def run(model=model, kw=kw, batch=batch, out=out):
                    out["rec"] = reconstruct(model, data, batch_size=batch, **kw)

                seconds = best_time(run, args.repeats)
                obj = out["rec"].object
                if reference is None:
                    reference = obj
                err = float(np.abs(obj - reference).max() / np.abs(reference).max())
                rows.append(
                    {
                        "table": "reconstruct",
                        "gridsize": gridsize,
                        "batch": batch,
                        "variant": name,
                        "patterns_per_s": round(data.n_positions / seconds, 1),
                        "max_rel_diff": float(f"{err:.2g}"),
                    }
                )
                logging.info("%s", rows[-1])
    return rows


def network_variants(gen: torch.nn.Module, x: torch.Tensor, compile_: bool) -> dict:
    """Callables running the generator on ``x`` in each variant (built outside timing)."""
    cl = copy.deepcopy(gen).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        frozen = torch.jit.optimize_for_inference(
            torch.jit.freeze(torch.jit.trace(copy.deepcopy(gen).eval(), x))
        )
    variants = {
        "eager": lambda: gen(x),
        "channels_last": lambda: cl(x_cl),
        "jit_frozen": lambda: frozen(x),
    }
    if compile_:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        compiled = torch.compile(copy.deepcopy(gen).to(memory_format=torch.channels_last))
        start = time.perf_counter()
        with torch.inference_mode():
            compiled(x_cl)
        logging.info("torch.compile took %.1f s", time.perf_counter() - start)
        variants["compiled"] = lambda: compiled(x_cl)
    return variants


def network_rows(args, data) -> list[dict]:
    rows = []
    for gridsize in args.gridsizes:
        gen = make_model(args, gridsize, data.probe).generator
        for batch in args.batch_sizes:
            x = torch.rand(batch, gridsize**2, 64, 64)
            with torch.inference_mode():
                ref = gen(x)[0]
            for name, fn in network_variants(gen, x, args.compile).items():
                with torch.inference_mode():
                    seconds = best_time(fn, args.repeats)
                    diff = float((fn()[0] - ref).abs().max())
                rows.append(
                    {
                        "table": "network",
                        "gridsize": gridsize,
                        "batch": batch,
                        "variant": name,
                        "patterns_per_s": round(batch / seconds, 1),
                        "max_rel_diff": float(f"{diff:.2g}"),
                    }
                )
                logging.info("%s", rows[-1])
    return rows


def print_rows(rows: list[dict]) -> None:
    keys = ["table", "gridsize", "batch", "variant", "patterns_per_s", "max_rel_diff"]
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    print("  ".join(k.rjust(widths[k]) for k in keys))
    for r in rows:
        print("  ".join(str(r[k]).rjust(widths[k]) for k in keys))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--gridsizes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--n_filters_scale", type=int, default=2)
    p.add_argument("--object_size", type=int, default=192, help="192 px, step 7: 361 patterns")
    p.add_argument("--step", type=float, default=7.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--tables", nargs="+", default=["reconstruct", "network"])
    p.add_argument("--bf16", action="store_true", help="also time bfloat16 autocast")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow)")
    p.add_argument("--model_path", default=None, help="trained archive instead of random weights")
    p.add_argument("--json", default=None, help="also write the rows as JSON")
    args = p.parse_args()
    quiet_benchmark_process(args.threads)
    data = simulate_dataset(seed=1, N=64, object_size=args.object_size, step=args.step)
    logging.info(
        "%d patterns of 64x64, %d torch threads", data.n_positions, torch.get_num_threads()
    )
    rows = []
    if "reconstruct" in args.tables:
        rows += reconstruct_rows(args, data)
    if "network" in args.tables:
        rows += network_rows(args, data)
    print_rows(rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "threads": torch.get_num_threads(), "rows": rows}, fh)


if __name__ == "__main__":
    main()
