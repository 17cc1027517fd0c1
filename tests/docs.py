"""Run a Markdown file's examples as a new user would: every block, in order, in one directory.

The README is a contract: what it shows must work as written. `blocks()` reads
the fenced blocks; `run_document()` runs the runnable ones in a fresh
directory, in the order they appear, each seeing what the blocks before it left
(a ledger, its key, files), with only the project's `.venv/bin` on PATH before
the system's and a home of its own (so nothing of the developer's leaks in).

- ```console: each `$ ` line is a command (a trailing `\\` continues it); the
  lines after it, up to the next `$ `, are the output it must print (stdout and
  stderr together). `…` in an expected line matches any text; a line that is
  only `…` matches any number of lines. A command must exit 0, unless its line
  ends with a comment that is only the code (`# exit 1`).
- ```sh: each line (comments and blank lines aside) is a command; exit 0 unless
  it ends with `# exit N`.
- ```python: the whole block is saved as a file and run as one program.
- Other blocks (json, text, plain) show formats and are not run.

A block that cannot run in CI says why in the document itself: the paragraph
just before it contains "Not run by the docs test" and the reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP_MARK = "Not run by the docs test"
RUNNABLE = ("console", "sh", "python")
EXIT_COMMENT = re.compile(r"#\s*exit (\d+)\s*$")
TIMEOUT_S = 180


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, text, the line it starts on, and whether it is run."""

    language: str
    text: str
    line: int
    skipped: bool

    @property
    def runnable(self) -> bool:
        return self.language in RUNNABLE and not self.skipped


class ExampleFailed(AssertionError):
    """An example did not do what the document says; the message names the line."""


def blocks(markdown: str) -> list[Block]:
    """Every fenced block of `markdown`, with whether the paragraph before it skips it."""
    found: list[Block] = []
    lines = markdown.splitlines()
    index = 0
    paragraph: list[str] = []  # the paragraph just before the next block (blank lines kept out)
    fresh = True
    while index < len(lines):
        line = lines[index]
        fence = re.match(r"^(\s*)```(\w*)\s*$", line)
        if fence is None:
            if line.strip():
                paragraph = [line] if fresh else [*paragraph, line]
                fresh = False
            else:
                fresh = True
            index += 1
            continue
        indent, language = fence.group(1), fence.group(2)
        start = index + 1
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index][len(indent):] if lines[index].startswith(indent) else lines[index])
            index += 1
        index += 1
        said = SKIP_MARK.lower() in " ".join(paragraph).lower()
        found.append(Block(language, "\n".join(body) + "\n", start, said))
        paragraph, fresh = [], True
    return found


def commands(block: Block) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, command, expected output lines) of a console or sh block."""
    lines = block.text.splitlines()
    index = 0
    while index < len(lines):
        raw = lines[index]
        number = block.line + index + 1
        index += 1
        if block.language == "sh":
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            command = raw
            while command.endswith("\\") and index < len(lines):
                command = command[:-1] + " " + lines[index]
                index += 1
            yield number, command, []
            continue
        if not raw.startswith("$ "):
            raise ExampleFailed(f"line {number}: console output with no command before it: {raw!r}")
        command = raw[2:]
        while command.endswith("\\") and index < len(lines):
            command = command[:-1] + " " + lines[index].strip()
            index += 1
        expected: list[str] = []
        while index < len(lines) and not lines[index].startswith("$ "):
            expected.append(lines[index])
            index += 1
        yield number, command, expected


def _pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*?".join(re.escape(part) for part in expected.rstrip().split("…")) + r"\Z")


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """Whether `actual` lines are what `expected` shows (`…` wildcards, a lone `…` any lines).

    A command shown with no output is not checked; one shown with output must
    print exactly those lines.
    """
    return not expected or _lines_match(expected, actual)


def _lines_match(expected: list[str], actual: list[str]) -> bool:
    if not expected:
        return not actual
    head, *rest = expected
    if head.strip() == "…":
        return any(_lines_match(rest, actual[skip:]) for skip in range(len(actual) + 1))
    if not actual or not _pattern(head).match(actual[0].rstrip()):
        return False
    return _lines_match(rest, actual[1:])


def environment(home: Path) -> dict[str, str]:
    """A new user's shell: the project's venv first on PATH, a home of its own, no LEDGER_* set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env.update(PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}", HOME=str(home),
               XDG_CONFIG_HOME=str(home / ".config"), PYTHONPATH=str(ROOT), COLUMNS="200")
    return env


def run_command(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)


def run_block(block: Block, cwd: Path, env: dict[str, str], where: str) -> None:
    """Run one block; raise `ExampleFailed` naming the line when it does not do what is shown."""
    if block.language == "python":
        program = cwd / f"example_line_{block.line}.py"  # saved as a file, as a user would run it
        program.write_text(block.text, encoding="utf-8")
        done = subprocess.run([sys.executable, program.name], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise ExampleFailed(f"{where} line {block.line}: the python block exited {done.returncode}:\n"
                                f"{done.stderr[-3000:]}")
        return
    for number, command, expected in commands(block):
        wanted = EXIT_COMMENT.search(command)
        code = int(wanted.group(1)) if wanted else 0
        done = run_command(command, cwd, env)
        output = (done.stdout + done.stderr).splitlines()
        if done.returncode != code:
            raise ExampleFailed(f"{where} line {number}: `{command}` exited {done.returncode}, not {code}:\n"
                                + "\n".join(output[-40:]))
        if not output_matches(expected, output):
            raise ExampleFailed(f"{where} line {number}: `{command}` printed\n" + "\n".join(output[-60:])
                                + "\nbut the document shows\n" + "\n".join(expected))


def run_document(path: Path, workdir: Path) -> int:
    """Run every runnable block of the document at `path` in `workdir`; return how many ran."""
    home = workdir / "home"
    cwd = workdir / "work"
    home.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    env = environment(home)
    ran = 0
    for block in blocks(path.read_text(encoding="utf-8")):
        if block.runnable:
            run_block(block, cwd, env, path.name)
            ran += 1
    return ran
