"""The training report: one self-contained HTML file made from a run directory's files only
(config.json, metrics.jsonl, samples.txt, tokens.bin and the checkpoints)."""
