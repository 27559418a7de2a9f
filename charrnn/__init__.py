"""charrnn: character-level recurrent language models with exact BPTT in NumPy.

    import charrnn
    lm = charrnn.load("runs/demo")                  # a run directory or a checkpoint file
    lm.generate("ROMEO:", length=200, seed=1)       # -> str, as `charrnn sample` prints it
    lm.score("Some text.").nats_per_char            # as `charrnn eval` reports it
    lm = charrnn.fit("my.txt", steps=500, out="runs/x")   # `charrnn train`, returning the model
    charrnn.run("runs/x")                           # in a notebook: its curves and newest samples
    charrnn.plot_curves("runs/x")                   # a matplotlib Figure; also plot_gradient_flow,
                                                    # plot_heatmap, plot_impulse

    from charrnn import CharRNN                     # the network itself, arrays in and out
    model = CharRNN(vocab_size=V, hidden_size=H, num_layers=L, dtype="float32", seed=0)
    loss, grads, h_last = model.loss_and_grads(inputs, targets, h0=None)

Beside it, two other shapes of the same layers: CharClassifier (one label per text) and CharTagger
(one tag per character, optionally with the output-to-hidden recurrence R).

The names below are loaded on first use, so that `import charrnn` (and importing one part, such
as `charrnn.core.lstm`) loads only what is asked for.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["CharClassifier", "CharRNN", "CharTagger", "CharRNNError", "CheckpointError", "ConfigError",
           "DataError", "LanguageModel", "Run", "Score", "__version__", "fit", "load", "plot_curves",
           "plot_gradient_flow", "plot_heatmap", "plot_impulse", "run"]


def __getattr__(name: str) -> Any:
    # Each public name is imported from its module on first use and kept (PEP 562), written out
    # rather than looked up by name so that what can be imported is plain to read.
    if name in ("LanguageModel", "Score", "fit", "load"):
        from . import api as module
    elif name in ("Run", "plot_curves", "plot_gradient_flow", "plot_heatmap", "plot_impulse", "run"):
        from . import notebook as module
    elif name in ("CharRNNError", "CheckpointError", "ConfigError", "DataError"):
        from . import errors as module
    elif name == "CharRNN":
        from .model import lm as module
    elif name == "CharClassifier":
        from .model import classify as module
    elif name == "CharTagger":
        from .model import tag as module
    else:
        raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
