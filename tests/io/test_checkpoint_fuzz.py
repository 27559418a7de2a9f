"""Fuzzing the checkpoint loader and the metadata parser: a file from anyone either loads into a
valid model or fails with the project's own CheckpointError; nothing else may escape.

The budget is small so the suite stays fast. For a long run:

    CHARRNN_FUZZ_EXAMPLES=50000 python -m pytest tests/io/test_checkpoint_fuzz.py -q    # some twenty minutes

(the number is the examples per test; the default of 800, about 3,500 files in all, keeps the file
under half a minute).
"""

import functools
import json
import os
import re
import struct
import tempfile
import tokenize
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charrnn import CharRNN
from charrnn.io.checkpoint import LATEST, load_checkpoint
from charrnn.settings import TrainConfig
from charrnn.errors import CharRNNError, CheckpointError
from charrnn.model import parameter_shapes
from charrnn.io.arrays import META_KEY, parse_json
from charrnn.train import Trainer

EXAMPLES = int(os.environ.get("CHARRNN_FUZZ_EXAMPLES", "800"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
TEXT = "the cat sat on the mat; a bat ate a rat.\n" * 8

# ------------------------------------------------------------------------------------------------
# valid files to start from, and a scratch file every example is written to


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="charrnn-fuzz-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def run_dir(workdir):
    """A real run: two layers so that every kind of array is present, Adam's two slots included."""
    text = workdir / "text.txt"
    text.write_text(TEXT)
    cfg = TrainConfig(text=str(text), cell="rnn", hidden_size=3, num_layers=2, seq_len=8, batch_size=2, steps=3,
                      eval_every=0, sample_every=0)
    Trainer(cfg, workdir / "run", quiet=True).run()
    return workdir / "run"


class Seeds(dict):
    """The valid files, by name (a short repr keeps hypothesis's reports readable)."""

    def __repr__(self) -> str:
        return f"Seeds({', '.join(self)})"


@pytest.fixture(scope="module")
def seeds(run_dir, workdir):
    path = workdir / "model.safetensors"
    CharRNN(5, 3, 2, seed=0).save(path)
    return Seeds(checkpoint=(run_dir / LATEST).read_bytes(), model=path.read_bytes())


def split(blob: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def join(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def check_loaded(path: Path) -> None:
    """The property: a valid checkpoint or a CheckpointError, for both loaders."""
    try:
        c = load_checkpoint(path)
    except CheckpointError as e:
        assert "\n" not in str(e)
    else:
        m = c.model
        shapes = parameter_shapes(m.vocab_size, m.hidden_size, m.num_layers, m.cell)
        assert list(m.params) == list(shapes)
        for name, shape in shapes.items():
            p = m.params[name]
            assert p.shape == shape and p.dtype == m.dtype and np.isfinite(p).all(), name
        if c.vocab is not None:
            assert c.vocab.size == m.vocab_size
        if c.hidden is not None:
            assert c.hidden.shape[0] == m.num_layers and c.hidden.shape[2] == m.hidden_size
            assert np.isfinite(c.hidden).all()
    try:
        m = CharRNN.load(path)
    except CheckpointError as e:
        assert "\n" not in str(e)
    else:
        for name, shape in parameter_shapes(m.vocab_size, m.hidden_size, m.num_layers).items():
            assert m.params[name].shape == shape and np.isfinite(m.params[name]).all()


def write(workdir: Path, data: bytes) -> Path:
    path = workdir / "fuzzed.safetensors"
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------------------
# what to break

NASTY = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 10**9, 2**63, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.lists(st.integers(-3, 10**10), max_size=4), st.builds(list), st.builds(dict),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.recursive(st.integers(), lambda inner: st.lists(inner, max_size=2), max_leaves=4),
)
DTYPES = st.sampled_from(["F32", "F64", "I64", "U8", "U32", "F16", "BF16", "I32", "BOOL", "XYZ", ""])


@functools.cache
def all_paths(blob: bytes) -> tuple:
    return tuple(paths(json.loads(split(blob)[0]["__metadata__"][META_KEY])))


def paths(obj, prefix=()):
    """Every (key path) inside a JSON document, containers included."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:6]):  # the first few elements of long lists are plenty
            yield from paths(v, prefix + (i,))


def mutate_json(meta, path, action, value):
    if not path:
        return value
    parent = meta
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    if action == "delete" and isinstance(parent, dict):
        del parent[key]
    elif action == "delete":
        parent.pop(key)
    elif action == "add" and isinstance(parent, dict):
        parent["unexpected_" + str(key)] = value
    else:
        parent[key] = value
    return meta


@st.composite
def metadata_mutations(draw, blob):
    header, data = split(blob)
    meta = json.loads(header["__metadata__"][META_KEY])
    for i in range(draw(st.integers(1, 3))):
        # after the first mutation a path may be gone: then it is simply skipped
        path = draw(st.sampled_from(all_paths(blob)))
        try:
            meta = mutate_json(meta, path, draw(st.sampled_from(["replace", "delete", "add"])), draw(NASTY))
        except (KeyError, IndexError, TypeError, AttributeError):
            pass
    header["__metadata__"][META_KEY] = json.dumps(meta, allow_nan=True)
    return join(header, data)


@st.composite
def table_mutations(draw, blob):
    header, data = split(blob)
    names = [k for k in header if k != "__metadata__"]
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.sampled_from(names))
        entry = header[name]
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets", "rename", "drop", "metadata"]))
        if field == "dtype":
            entry["dtype"] = draw(DTYPES)
        elif field == "shape":
            entry["shape"] = draw(st.lists(st.one_of(st.integers(0, 8), st.sampled_from([-1, 2**31, 2**62])),
                                           max_size=4))
        elif field == "data_offsets":
            entry["data_offsets"] = [draw(st.integers(-2, len(data) + 8)) for _ in range(2)]
        elif field == "rename":
            header[draw(st.sampled_from(["optim/exp_avg/nope", "state/other", "../etc", name + "x"]))] = header.pop(name)
            names = [k for k in header if k != "__metadata__"]
        elif field == "drop" and len(names) > 1:
            header.pop(name)
            names.remove(name)
        elif field == "metadata":
            header["__metadata__"] = draw(st.one_of(NASTY, st.dictionaries(st.text(max_size=8), st.text(max_size=8))))
    return join(header, data)


@st.composite
def byte_mutations(draw, blob):
    b = bytearray(blob)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["set", "set", "set", "insert", "delete", "truncate"]))
        # bias toward the 8-byte length and the JSON header, where the structure lives
        n = struct.unpack("<Q", bytes(b[:8]))[0] if len(b) >= 8 else len(b)
        hi = min(len(b), 8 + n) if draw(st.booleans()) else len(b)
        if hi == 0:
            break
        i = draw(st.integers(0, hi - 1))
        if op == "set":
            b[i] = draw(st.integers(0, 255))
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del b[i : i + draw(st.integers(1, 8))]
        else:
            del b[i:]
    return bytes(b)


# ------------------------------------------------------------------------------------------------


def test_the_starting_files_load(workdir, seeds):
    check_loaded(write(workdir, seeds["checkpoint"]))
    assert load_checkpoint(write(workdir, seeds["checkpoint"])).config is not None
    assert CharRNN.load(write(workdir, seeds["model"])).num_layers == 2


@FUZZ
@given(data=st.data())
def test_metadata_mutations(workdir, seeds, data):
    blob = seeds[data.draw(st.sampled_from(sorted(seeds)))]
    check_loaded(write(workdir, data.draw(metadata_mutations(blob))))


@FUZZ
@given(data=st.data())
def test_header_table_mutations(workdir, seeds, data):
    blob = seeds[data.draw(st.sampled_from(sorted(seeds)))]
    check_loaded(write(workdir, data.draw(table_mutations(blob))))


@FUZZ
@given(data=st.data())
def test_byte_mutations_and_truncations(workdir, seeds, data):
    blob = seeds[data.draw(st.sampled_from(sorted(seeds)))]
    check_loaded(write(workdir, data.draw(byte_mutations(blob))))


@FUZZ
@given(blob=st.one_of(
    st.binary(max_size=256),
    # a well-formed length prefix in front of random bytes gets the parser further
    st.binary(max_size=200).map(lambda b: struct.pack("<Q", len(b)) + b),
    st.dictionaries(st.text(max_size=6), NASTY, max_size=4).map(
        lambda meta: join({"__metadata__": {META_KEY: json.dumps(meta, allow_nan=True)}}, b"")),
))
def test_random_files(workdir, blob):
    check_loaded(write(workdir, blob))


@settings(FUZZ, max_examples=max(100, EXAMPLES // 2))
@given(text=st.one_of(st.text(max_size=64), st.binary(max_size=64),
                      st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
                                   lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                                   max_leaves=8).map(lambda v: json.dumps(v, allow_nan=True))))
def test_metadata_parser(text):
    try:
        parse_json(text, "fuzz")
    except CheckpointError:
        pass


def test_metadata_parser_refuses_deep_nesting_and_non_finite_numbers():
    for text in ("[" * 100_000 + "]" * 100_000, '{"a": NaN}', "[Infinity]", "-Infinity", "\xff"):
        with pytest.raises(CheckpointError):
            parse_json(text, "x")


# Resuming reads more of the metadata than loading does (optimizer, data position, generators).
RESUME = settings(FUZZ, max_examples=max(50, EXAMPLES // 10))


@RESUME
@given(data=st.data())
def test_resume_from_mutated_metadata(run_dir, seeds, data):
    """Every mutation either resumes or fails with one of the project's own errors."""
    (run_dir / LATEST).write_bytes(data.draw(metadata_mutations(seeds["checkpoint"])))
    try:
        trainer = Trainer(TrainConfig(), run_dir, resume=True, quiet=True)
    except CharRNNError as e:
        assert "\n" not in str(e)
    else:
        assert trainer.state["step"] >= 0 and np.isfinite(trainer.hidden).all()
        trainer.total_steps = trainer.state["step"] + 1  # and it trains
        try:
            trainer.run()
        except CharRNNError as e:  # e.g. a saved learning rate so large that the run diverges
            assert "\n" not in str(e)
    finally:
        (run_dir / LATEST).write_bytes(seeds["checkpoint"])


# ------------------------------------------------------------------------------------------------
# nothing in the package can run code named by a file

FORBIDDEN = [r"\bpickle\b", r"\bcPickle\b", r"\bdill\b", r"\bmarshal\b", r"\bshelve\b", r"(?<![\w.])eval\s*\(",
             r"(?<![\w.])exec\s*\(", r"__import__", r"importlib\.import_module", r"allow_pickle\s*=\s*True",
             r"torch\.load\b", r"yaml\.load\b", r"(?<![\w.])compile\s*\("]


def code_lines(source: Path):
    """(line number, code) of a Python file with its comments and string literals blanked out,
    so that prose such as "unlike pickle" in a docstring is not mistaken for a use."""
    lines = source.read_text(encoding="utf-8").splitlines()
    with source.open("rb") as f:
        for tok in tokenize.tokenize(f.readline):
            if tok.type in (tokenize.COMMENT, tokenize.STRING):
                (r0, c0), (r1, c1) = tok.start, tok.end
                for r in range(r0, r1 + 1):
                    a = c0 if r == r0 else 0
                    b = c1 if r == r1 else len(lines[r - 1])
                    lines[r - 1] = lines[r - 1][:a] + " " * (b - a) + lines[r - 1][b:]
    return enumerate(lines, 1)


def test_nothing_unpickles_evals_or_imports_by_name(tmp_path):
    package = Path(__file__).resolve().parents[2] / "charrnn"
    hits = []
    for source in sorted(package.rglob("*.py")):
        for lineno, line in code_lines(source):
            for pattern in FORBIDDEN:
                if re.search(pattern, line):
                    hits.append(f"{source.name}:{lineno}: {line.strip()}")
    assert not hits, "\n".join(hits)
    # the scan sees code, and only code
    planted = tmp_path / "planted.py"
    planted.write_text('import pickle\n"""pickle in prose"""\nx = 1  # eval(x)\ny = eval("1")\n')
    found = [n for n, line in code_lines(planted) if any(re.search(p, line) for p in FORBIDDEN)]
    assert found == [1, 4]
