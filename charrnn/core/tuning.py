"""Every speed threshold of the package, in one place.

Each is a choice made for speed alone: the results are the same on either side of it (up to the
rounding of sums taken in another order). One line says why; the measurements that set it are in
BENCHMARKS.md under "Dispatch thresholds (core/tuning.py)". The core may import this module and
everything else takes its thresholds from here. Code reads them at the time of use (`tuning.X`),
so a test can move one with monkeypatch.
"""

from __future__ import annotations

# core/rnn.py: up to this many numbers per step's state (B * H) the tanh cell's recurrence runs in
# its compiled loops (numba): the per-step products are matrix-vector sized and Python's per-call
# cost dominates; above it the BLAS products of the NumPy loops win.
RNN_JIT_MAX_WORK = 256

# core/rnn.py: the scratch of tanh'(a_t) = 1 - h_t^2 in the BPTT loop, in numbers: enough steps
# for the vectorised product to pay for small B * H, few enough to stay in cache for large ones.
DTANH_CHUNK_ELEMENTS = 1 << 16

# core/lstm.py, core/gru.py: up to this many numbers per step's state (B * H) the compiled path runs
# a whole window in one call, its matrix-vector products written as loops; above it each step is a
# BLAS product and one compiled call.
JIT_WINDOW_MAX_WORK = 256

# core/_jit.py: the backward passes' window-sized scratch kept for this many recent shapes.
SCRATCH_SHAPES = 4

# model/parallel.py: a shard below this many numbers per step (B_i * H) stays whole: its steps'
# NumPy calls hold the GIL around products too short to hide it, and the workers queue for it.
MIN_SHARD_WORK = 4096
# The same where a cell's steps run as compiled kernels, which hold no GIL inside a step.
MIN_SHARD_WORK_COMPILED = 1024

# threadplan.py: training's default count of cores, decided per configuration. Every core is kept
# only where the step with every core is at least this many times as fast as with one worker in
# the condition the machine is in as the run starts (as measured on a free machine, or beside a
# busy process; median step times); below it one worker, which a busy neighbour slows by its
# share and no more. The 3% margin is an estimate of the spread of the
# medians of a second-long measurement on a quiet machine (BENCHMARKS.md: not measured there), so
# that a tie (a small window that two workers share on one free core) goes to one worker.
THREADS_MIN_SPEEDUP = 1.03
# threadplan.py: seconds the timed steps of one measurement take in all (both counts, both
# conditions); a window whose step would take longer is timed over fewer of its time steps,
# whose per-step cost is the same (and with fewer repeats below).
THREADS_MEASURE_SECONDS = 1.5
# threadplan.py: timed steps of each count in each condition, the counts alternating; a step too
# long for the budget even over THREADS_MEASURE_MIN_STEPS gets the fewer repeats.
THREADS_MEASURE_REPEATS = 5
THREADS_MEASURE_MIN_REPEATS = 3
# threadplan.py: time steps a shortened window keeps at least, so that what each call costs once
# (the gradients' zeroing and sum over the workers, the pool's hand-off) weighs no more than in
# training, where it is spread over the whole window.
THREADS_MEASURE_MIN_STEPS = 16

# train/fused.py: the whole training step in one compiled call for one stream of up to this many
# hidden units; above it (or with more streams) the BLAS products of the NumPy path take over.
FUSED_MAX_HIDDEN = 256

# sample.py: fewer streams than this are generated one after another, and a worker thread gets
# this many at least: a product over a few columns costs BLAS nearly what one stream's does.
MIN_STEPPED_TOGETHER = 8

# evaluate/lm.py: steps per forward call when scoring, long enough that per-call overhead vanishes.
EVAL_WINDOW = 256
# evaluate/lm.py: numbers a scoring call holds at once, about (streams * steps) * (2V + 3H): a few
# MB whatever the streams, symbols or units (the window is shortened to stay under it).
MAX_WINDOW_NUMBERS = 1 << 20
