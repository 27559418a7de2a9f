"""Every file format charrnn writes, with the newest version of each, in one table.

A file names its format and version in its metadata; a reader refuses a format it does not know and
a version newer than the one here (arrays.read_header). A version is raised when what a file holds
changes meaning; older versions stay readable (each reader says how).
"""

MODEL = "charrnn.model"  # a model file: parameters and structure (modelfile.py, `CharRNN.save`, import)
CHECKPOINT = "charrnn.checkpoint"  # a language model's training checkpoint (checkpoint.py)
TASK = "charrnn.task"  # a classifier's or tagger's checkpoint (task_checkpoint.py)
TORCH_EXPORT = "charrnn.torch-export"  # `charrnn export --format torch`: for PyTorch, never read back
ONNX_EXPORT = "charrnn.onnx-export"  # `charrnn export --format onnx`: for ONNX Runtime, never read back

# format -> the newest version this charrnn reads and writes, and what each version changed
VERSIONS: dict[str, int] = {
    MODEL: 2,  # 2: "cell" and "dropout" in the model configuration
    CHECKPOINT: 2,  # 2: the model configuration gained "cell" and "dropout"; LSTM states add state/cell
    TASK: 1,
}
