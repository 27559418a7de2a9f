"""Persistence: every file charrnn reads or writes, in one package.

    writer.py           the one writer: atomic replacement (temporary, fsync, rename) of any file
    arrays.py           safetensors I/O: arrays plus JSON metadata, read defensively
    modelfile.py        a model's file (parameters and structure)
    checkpoint.py       a language model's training checkpoint
    task_checkpoint.py  a classifier's or tagger's checkpoint
    state.py            the training state every checkpoint carries, and its one validator
    formats.py          every file format and its version, in one table
    layout.py           a run directory's layout; making, replacing and tidying one
    rundir.py           reading a run directory (metrics, samples, configuration, text)
    lock.py             a run directory's write lock
"""
