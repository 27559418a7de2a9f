"""Models to and from other frameworks (Keras 3: keras.py). PyTorch needs no converter: charrnn's
parameters already carry its names and layouts (export.py)."""
