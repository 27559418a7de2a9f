"""charrnn impulse: the scalar linear recurrence h_t = w h_(t-1) + x_t (or a matrix) fed a unit impulse."""

from __future__ import annotations

import argparse

from ._common import add_force_flag, command


@command("impulse", "the impulse response of h_t = w h_(t-1) + x_t: why gradients vanish or explode",
         outputs=("--plot",))
def _impulse(p: argparse.ArgumentParser):
    p.add_argument("--w", type=float, default=-0.9, help="the scalar weight w (default -0.9: a decaying, sign-flipping response)")
    p.add_argument("--steps", type=int, default=20, help="print h_0..h_N (default 20)")
    p.add_argument("--matrix", type=int, metavar="H", default=None,
                   help="an H x H matrix instead: R times a random orthogonal matrix, so |h_t| = R^t")
    p.add_argument("--radius", type=float, metavar="R", default=0.9, help="the matrix's spectral radius (default 0.9)")
    p.add_argument("--gaussian", action="store_true", help="a random Gaussian matrix rescaled to spectral radius R")
    p.add_argument("--seed", type=int, default=0, help="seed of the random matrix and impulse")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="also draw the response to FILE.png")
    add_force_flag(p, "--plot's FILE.png")

    def run(a: argparse.Namespace) -> int:
        import json

        from ..diagnostics.impulse import MEANING, impulse_response

        if a.gaussian and a.matrix is None:
            a.matrix = 64
        if a.plot is not None:
            from ..diagnostics.plots import pyplot
            from ..io.writer import check_target

            check_target(a.plot, force=a.force)  # a target that will be refused, and
            pyplot()  # a missing matplotlib, are reported before any work
        imp = impulse_response(a.w, a.steps, a.matrix, a.radius, a.gaussian, a.seed)
        if a.json:
            print(json.dumps(imp.to_json(), allow_nan=False))
        elif imp.kind == "scalar":
            print(f"h_t = w h_(t-1) + x_t with w = {a.w:g}, a unit impulse x_0 = 1: h_t = w^t")
            print(f"{'t':>4} {'h_t':>14} {'|w|^t':>14}")
            for t, (h, e) in enumerate(zip(imp.values, imp.envelope)):
                print(f"{t:>4} {h:>14.6g} {e:>14.6g}")
        else:
            what = "a Gaussian matrix rescaled to" if a.gaussian else f"{a.radius:g} times an orthogonal matrix, so"
            print(f"h_t = W h_(t-1) + x_t with W {a.matrix} x {a.matrix}, {what} spectral radius R = {a.radius:g}")
            print(f"{'t':>4} {'max |h_t| = |W^t|':>18} {'random |h_t|':>14} {'R^t':>14}")
            for t, (w, h, e) in enumerate(zip(imp.values, imp.random, imp.envelope)):
                print(f"{t:>4} {w:>18.6g} {h:>14.6g} {e:>14.6g}")
        if not a.json:
            print(f"what it means: {MEANING}.")
        if a.plot is not None:
            from ..diagnostics.plots import impulse_figure, write_png

            write_png(impulse_figure(imp), a.plot, force=a.force)
        return 0

    return run
