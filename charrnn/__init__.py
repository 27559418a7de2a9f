"""charrnn: character-level recurrent language models with exact BPTT in NumPy.

    from charrnn import CharRNN
    model = CharRNN(vocab_size=V, hidden_size=H, num_layers=L, dtype="float32", seed=0)
    loss, grads, h_last = model.loss_and_grads(inputs, targets, h0=None)

Beside it, seed 002's two other networks: CharClassifier (one label per text) and CharTagger
(one tag per character, optionally with the output-to-hidden recurrence R).
"""

from .errors import CharRNNError, CheckpointError, ConfigError, DataError
from .model import CharClassifier, CharRNN, CharTagger

__version__ = "0.1.0"

__all__ = ["CharClassifier", "CharRNN", "CharTagger", "CharRNNError", "CheckpointError", "ConfigError", "DataError", "__version__"]
