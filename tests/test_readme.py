"""Every code block of the README runs, so that no example can rot.

The blocks are discovered from README.md, not listed: a block added later runs too, or fails.
They run in document order in one temporary folder, so a block can use what an earlier one made
(a run trained by one block is sampled by the next):

- python: verbatim, in a fresh interpreter, each block its own process.
- bash / sh: the block as a bash script (`set -e`: a command that fails fails the block).
- console: each `$ ` line is a command, run on its own; the lines shown after it are its output,
  checked for their shape, not their numbers: each line of the program's own words (one starting
  "charrnn" or "wrote") must come back with its words in order, every number and quoted piece
  of text in it free to differ (and a clause a shortened run adds allowed), and a JSON object
  shown must come back with the same keys.
- toml: written to the file its first comment names, and read as `--config` reads it (an unknown
  key or a wrong type fails).
- a block without a language, or `text`: program output and equations, not run.

Training budgets are shortened by rewriting the commands in this test (not through the
environment): `--time-budget N` becomes BUDGET seconds, `--steps N` becomes STEPS, and a training
command that gives neither gets `--time-budget BUDGET`. Python blocks are run as written.
`pip install` is not run: the test runs in an environment that has the extras installed. The
files a reader is assumed to have (my.txt, data.tsv, data.jsonl, a folder of notes, ...) are made
before the command that names them, from their extension: text, tab-separated labelled texts, or
JSON Lines of tagged texts.

A block is exempt only when the line just above its fence says why: `<!-- not run: REASON -->`
(a GPU, several machines). An unmarked block that does not run fails the test.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import SONNET

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUN = {"python", "bash", "sh", "console", "toml"}
NOT_CODE = {"", "text"}  # program output and equations
EXEMPT = re.compile(r"^<!--\s*not run:\s*(\S.*?)\s*-->$")
FENCE = re.compile(r"^```(\S*)\s*$")
BUDGET = 3  # seconds of training for a command that trains
STEPS = 20  # steps for one that counts them
TRAINS = re.compile(r"\b((?:-m )?charrnn (?:classify |tag )?train)\b")
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")
WORD = re.compile(r"[\w#]+|[^\w\s]")  # a word, or one mark of punctuation
QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'")  # a piece of text quoted in a message (repr)


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    body: str
    exempt: str | None  # the reason given, for a block not run


def readme_blocks(text: str) -> list[Block]:
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"README.md:{start + 1}: a code block is never closed"
        above = lines[start - 1].strip() if start else ""
        reason = EXEMPT.match(above)
        out.append(Block(start + 1, m.group(1), "\n".join(body), reason.group(1) if reason else None))
        i += 1
    return out


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def test_every_block_is_code_that_runs_or_says_why_not():
    """The languages the runner knows; anything else (a new kind of block) fails here."""
    assert len(BLOCKS) > 20
    for b in BLOCKS:
        assert b.lang in RUN | NOT_CODE, f"README.md:{b.line}: a ```{b.lang} block: the test cannot run it"
        if b.exempt is not None:
            assert b.lang in RUN and len(b.exempt) >= 8, f"README.md:{b.line}: say why it is not run"
    assert sum(b.lang in RUN and b.exempt is None for b in BLOCKS) >= 15


def test_the_block_finder_sees_fences_exemptions_and_languages():
    found = readme_blocks("x\n```bash\nls\n```\n<!-- not run: needs a GPU -->\n```python\nimport torch\n```\n```\na\n```")
    assert [(b.line, b.lang, b.body, b.exempt) for b in found] == [
        (2, "bash", "ls", None), (6, "python", "import torch", "needs a GPU"), (9, "", "a", None)]


# -- running them --------------------------------------------------------------------------------

def shortened(command: str) -> str:
    """The command with its training budget cut (module docstring)."""
    command = re.sub(r"--time-budget[ =]\d+", f"--time-budget {BUDGET}", command)
    command = re.sub(r"--steps[ =]\d+", f"--steps {STEPS}", command)
    if TRAINS.search(command) and "--time-budget" not in command and "--steps" not in command:
        command = TRAINS.sub(rf"\1 --time-budget {BUDGET}", command)
    return command


def provide_files(command: str, where: Path) -> None:
    """Make the input files a command names that a reader is assumed to have, and the folders of
    the files it writes (as in a checkout, where docs/ exists)."""
    for line in command.split("\n"):
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        for w in words:
            if w.startswith(("-", "/")) or "=" in w or "://" in w:
                continue
            p = where / w
            if w.endswith("/") and not p.exists() and "." not in w:
                p.mkdir(parents=True)
                (p / "a.txt").write_text(SONNET, encoding="utf-8")
                (p / "b" / "c.txt").parent.mkdir()
                (p / "b" / "c.txt").write_text(SONNET.upper(), encoding="utf-8")
                continue
            if "/" in w and p.suffix:
                p.parent.mkdir(parents=True, exist_ok=True)
            if p.exists():
                continue
            if p.suffix == ".txt":
                p.write_text(SONNET * 6, encoding="utf-8")
            elif p.suffix == ".tsv":  # the label of a line is its first word's first letter
                rows = [f"{ln}\t{'AB'[ln[:1].lower() < 'n']}" for ln in SONNET.splitlines() if ln.strip()]
                p.write_text("\n".join(rows * 4) + "\n", encoding="utf-8")
            elif p.suffix == ".jsonl":  # vowel or not, character by character
                with p.open("w", encoding="utf-8") as f:
                    for ln in [ln for ln in SONNET.splitlines() if ln.strip()] * 3:
                        f.write(json.dumps({"text": ln, "tags": ["V" if c in "aeiou" else "C" for c in ln]}) + "\n")


PRELUDE = """
charrnn() { "$PYTHON" -m charrnn "$@"; }
python() { "$PYTHON" "$@"; }
pip() { echo "(pip $*: not run; the test's environment has it installed)"; }
"""


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHON"] = sys.executable
    env["MPLBACKEND"] = "Agg"
    return env


def shell(script: str, where: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", PRELUDE + "set -e\n" + script], cwd=where, env=environment(),
                          capture_output=True, text=True, timeout=600)


def skeleton(line: str) -> str:
    """The line with every number and every quoted piece of text free to differ."""
    return " ".join(NUMBER.sub("#", QUOTED.sub("'_'", line)).split())


def console_commands(body: str) -> list[tuple[str, list[str]]]:
    """(command, the output lines shown after it) of a console block."""
    out: list[tuple[str, list[str]]] = []
    for line in body.split("\n"):
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line)
    return out


def shaped_like(shown: str, got: str) -> bool:
    """`got` has the words of `shown` in order, numbers and quoted text aside, beginning with the
    same words up to the first colon; it may carry more (a clause that only a shortened run adds, such as "on a sample of N
    of its M characters" for a validation cut to fit the budget)."""
    want, got_words = WORD.findall(skeleton(shown)), WORD.findall(skeleton(got))
    head = want.index(":") + 1 if ":" in want else 1  # who speaks ("charrnn sample:") is the same
    have = iter(got_words[head:])
    return bool(want) and got_words[:head] == want[:head] and all(w in have for w in want[head:])


def shape_problems(shown: list[str], got: str) -> list[str]:
    got_lines = got.split("\n")
    problems = []
    for s in shown:
        if s.startswith(("charrnn", "wrote")) and not any(shaped_like(s, g) for g in got_lines):
            problems.append(f"no line shaped like {s!r}")
        if s.startswith("{"):
            objects = [json.loads(g) for g in got_lines if g.startswith("{")]
            if not objects or set(objects[0]) != set(json.loads(s)):
                problems.append(f"no JSON object with the keys of {s!r}")
    return problems


def run_block(b: Block, where: Path, n: int) -> str | None:
    """None when the block runs as the README says; else what went wrong."""
    if b.lang == "python":
        script = where / f"readme_block_{n}.py"
        script.write_text(b.body + "\n", encoding="utf-8")
        p = subprocess.run([sys.executable, script.name], cwd=where, env=environment(), capture_output=True,
                           text=True, timeout=600)
        return None if p.returncode == 0 else f"exit {p.returncode}: {p.stderr[-2000:]}"
    if b.lang == "toml":
        from charrnn.settings import LM, check_given, read_config_file

        name = re.match(r"#\s*(\S+\.toml)", b.body)
        assert name, f"README.md:{b.line}: a TOML block names its file in its first line (# NAME.toml)"
        (where / name[1]).write_text(b.body + "\n", encoding="utf-8")
        check_given(read_config_file(where / name[1]), LM, name[1])
        return None
    if b.lang in ("bash", "sh"):
        provide_files(b.body, where)
        p = shell(shortened(b.body), where)
        return None if p.returncode == 0 else f"exit {p.returncode}: {(p.stdout + p.stderr)[-2000:]}"
    for command, shown in console_commands(b.body):  # console
        provide_files(command, where)
        p = shell(shortened(command) + " 2>&1", where)
        if p.returncode != 0:
            return f"$ {command}: exit {p.returncode}: {p.stdout[-2000:]}"
        problems = shape_problems(shown, p.stdout)
        if problems:
            return f"$ {command}: " + "; ".join(problems) + f"\n--- its output:\n{p.stdout[-2000:]}"
    return None


@pytest.mark.slow
def test_every_block_of_the_readme_runs_in_document_order(tmp_path):
    failed = []
    for n, b in enumerate(BLOCKS):
        if b.lang in NOT_CODE or b.exempt is not None:
            continue
        problem = run_block(b, tmp_path, n)
        if problem is not None:
            failed.append(f"README.md:{b.line} ({b.lang}): {problem}")
    assert not failed, "\n\n".join(failed)


def test_the_runner_fails_a_block_that_does_not_run_and_checks_shapes(tmp_path):
    assert run_block(Block(1, "bash", "charrnn nonsense-command", None), tmp_path, 0) is not None
    assert run_block(Block(1, "python", "undefined_name", None), tmp_path, 1) is not None
    assert run_block(Block(1, "console", "$ charrnn impulse --w 0.5 --steps 2\nwhat it means: x", None),
                     tmp_path, 2) is None
    assert shape_problems(["charrnn: 12 steps, validation 1.5 nats"], "charrnn: 3 steps, validation 2.25 nats") == []
    assert shape_problems(["charrnn: 12 steps, validation 1.5 nats"], "charrnn: 3 steps, no validation") != []
    assert shape_problems(["charrnn: 12 steps, validation 1.5 nats; done"],
                          "charrnn: 3 steps, validation 2.1 nats on a sample of 9 of its 50 characters; done") == []
    assert shape_problems(["charrnn: 12 steps"], "wrote x\ncharrnn sample: 12 steps") != []
    assert skeleton("copied is 12 characters: ' dearly,\\nAnd'") == skeleton("copied is 6 characters: 'e din '")
    assert shortened("charrnn train my.txt --steps 5000") == f"charrnn train my.txt --steps {STEPS}"
    assert shortened("charrnn tag train x.jsonl  # a tagger") == f"charrnn tag train --time-budget {BUDGET} x.jsonl  # a tagger"
