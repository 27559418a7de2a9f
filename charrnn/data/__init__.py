"""Text in, token ids out.

    text.py           the vocabulary, streaming encoding of files, the train/validation split, batching
    labelled.py       labelled examples for classification and tagging (TSV, JSON Lines)
    shakespeare.py    the built-in corpus of `--dataset shakespeare`
    task_corpora.py   the built-in data of the task commands (wordlang, pytokens)
"""
