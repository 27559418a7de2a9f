"""charrnn: character-level recurrent language models with exact BPTT in NumPy.

    import charrnn
    lm = charrnn.load("runs/demo")                  # a run directory or a checkpoint file
    lm.generate("ROMEO:", length=200, seed=1)       # -> str, as `charrnn sample` prints it
    lm.score("Some text.").nats_per_char            # as `charrnn eval` reports it
    lm = charrnn.fit("my.txt", steps=500, out="runs/x")   # `charrnn train`, returning the model

    from charrnn import CharRNN                     # the network itself, arrays in and out
    model = CharRNN(vocab_size=V, hidden_size=H, num_layers=L, dtype="float32", seed=0)
    loss, grads, h_last = model.loss_and_grads(inputs, targets, h0=None)

Beside it, seed 002's two other networks: CharClassifier (one label per text) and CharTagger
(one tag per character, optionally with the output-to-hidden recurrence R).
"""

from .api import LanguageModel, Score, fit, load
from .errors import CharRNNError, CheckpointError, ConfigError, DataError
from .model import CharClassifier, CharRNN, CharTagger

__version__ = "0.1.0"

__all__ = ["CharClassifier", "CharRNN", "CharTagger", "CharRNNError", "CheckpointError", "ConfigError",
           "DataError", "LanguageModel", "Score", "__version__", "fit", "load"]
