"""Scoring a trained model.

    lm.py      a language model's nats per character over a text (streams, windows, periodic samples)
    tasks.py   a classifier's or tagger's loss, accuracy, F1 and confusion matrix
"""
