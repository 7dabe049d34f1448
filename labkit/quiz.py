"""Practice mode: timed, self-graded interview questions from interview-prep/, with the lab that teaches each.

    python -m labkit.quiz --track llm -n 5     # five random questions, timed
    python -m labkit.quiz --track cv --list    # every question and where it is taught; asks nothing
    python -m labkit.quiz --seed 7             # the same draw every time

Two sources per track:
  * concept questions: every `### Q: <question>` heading in interview-prep/<track>/NN-*.md. The answer is the text
    below it, up to the next heading; a line starting `Lab:` holds markdown links to the labs that teach it.
  * coding questions: every task of the track's coding lab (interview-prep/llm/02-llm-coding-questions,
    interview-prep/cv/02-algorithms-data-structures). The reference answer is the complexity its docstrings
    state, and `make check ... TASK=<task>` grades your code.

For each question: read it, answer aloud or on paper, press Enter to see the reference answer (the time you took
is recorded), then say whether you got it right (y/n). Attempts are appended to quiz-results.json in the labkit
cache folder (LABKIT_CACHE, default ~/.cache/ai-engineer-labs). Everything is local; nothing touches the network.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from labkit.labs import ROOT
from labkit.scaffold import find_regions

TRACKS = ("llm", "cv")
CODING_LABS = {"llm": "interview-prep/llm/02-llm-coding-questions",
               "cv": "interview-prep/cv/02-algorithms-data-structures"}
QUESTION = re.compile(r"^### Q:\s*(?P<title>\S.*)$")
HEADING = re.compile(r"^#{1,3} ")
LINK = re.compile(r"\[(?P<label>[^\]]+)\]\((?P<target>[^)\s]+)\)")
RESULTS_FILE = "quiz-results.json"
CLOSED_STDIN = ("quiz: no answers can be read (stdin is closed or empty); run it in a terminal "
                "(`make quiz TRACK=llm`), or use --list to see the questions")


@dataclass(frozen=True)
class Question:
    id: str  # stable key for the results file: "<document or lab>: <question or [task]>"
    kind: str  # "concept" or "coding"
    prompt: str
    answer: str
    taught_in: tuple[str, ...]  # repository-relative paths (lab folders, documents)


# ------------------------------------------------------------------ loading questions

def _repo_path(document: Path, target: str) -> str:
    """A relative link of a document as a repository-relative path ('' for external or in-page links)."""
    if re.match(r"^[a-z]+:", target) or target.startswith("#"):
        return ""
    resolved = os.path.normpath(document.parent / target.split("#")[0])
    return os.path.relpath(resolved, ROOT)


def document_questions(document: Path) -> list[Question]:
    """The `### Q:` questions of one markdown file."""
    questions, current = [], None
    for line in document.read_text(encoding="utf-8").splitlines() + ["# end"]:
        if current is not None and (QUESTION.match(line) or HEADING.match(line)):
            title, body, labs = current
            questions.append(Question(f"{document.stem}: {title}", "concept", title, "\n".join(body).strip(),
                                      tuple(dict.fromkeys(labs))))
            current = None
        if match := QUESTION.match(line):
            current = (match["title"].strip(), [], [])
        elif current is not None and line.startswith("Lab:"):
            current[2].extend(p for m in LINK.finditer(line) if (p := _repo_path(document, m["target"])))
        elif current is not None:
            current[1].append(line)
    return questions


def _sentences(docstring: str) -> list[str]:
    return re.split(r"(?<=[.:;])\s+(?=[A-Z])", " ".join(docstring.split()))


def coding_questions(lab: str) -> list[Question]:
    """One question per task of a coding lab: what each function does (the first sentence of its docstring) is the
    prompt; the cost its docstring states, the scaffold's hints and the grading command are the answer."""
    solution = ROOT / lab / "solution.py"
    source = solution.read_text(encoding="utf-8")
    tree = ast.parse(source)
    functions = [(node, parent) for parent in ast.walk(tree) for node in ast.iter_child_nodes(parent)
                 if isinstance(node, ast.FunctionDef)]
    tasks: dict[str, dict] = {}
    for region in find_regions(source, str(solution)):
        task = tasks.setdefault(region.task, {"asks": [], "costs": [], "hints": []})
        for node, parent in functions:
            if not node.lineno < region.begin <= node.end_lineno + 1:
                continue
            name = f"{parent.name}.{node.name}" if isinstance(parent, ast.ClassDef) else node.name
            if any(line.startswith(name + ":") for line in task["asks"]):
                continue
            doc = ast.get_docstring(node) or ""
            if not doc and isinstance(parent, ast.ClassDef):
                doc = ast.get_docstring(parent) or ""
            sentences = _sentences(doc) if doc else ["(see solution.py)"]
            task["asks"].append(f"{name}: {sentences[0]}")
            task["costs"] += [f"{name}: {s}" for s in sentences if "O(" in s]
        task["hints"].append(region.hint)
    name = Path(lab).name
    return [Question(f"{name}: [{task}]", "coding",
                     f"Write [{task}] from memory, and state its cost:\n  " + "\n  ".join(info["asks"]),
                     "\n".join(["Cost:"] + [f"  {c}" for c in info["costs"]]
                               + ["Hints:"] + [f"  {h}" for h in dict.fromkeys(info["hints"])]
                               + [f"Grade it: make check LAB={name} TASK={task}"]),
                     (lab,))
            for task, info in tasks.items()]


def load_questions(track: str, kind: str = "all") -> list[Question]:
    found = []
    if kind in ("all", "concepts"):
        for document in sorted((ROOT / "interview-prep" / track).glob("[0-9][0-9]-*.md")):
            found += document_questions(document)
    if kind in ("all", "coding"):
        found += coding_questions(CODING_LABS[track])
    return found


# ------------------------------------------------------------------ results file

def results_path() -> Path:
    root = Path(os.environ.get("LABKIT_CACHE", Path.home() / ".cache" / "ai-engineer-labs"))
    return root / RESULTS_FILE


def load_results(path: Path) -> dict:
    """The results so far; an unreadable file is kept aside as <name>.corrupt and a fresh record starts."""
    if not path.exists():
        return {"version": 1, "attempts": []}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data.get("attempts"), list):
            raise ValueError("no attempts list")
        return data
    except (ValueError, AttributeError):
        aside = path.with_name(path.name + ".corrupt")
        path.replace(aside)
        print(f"quiz: {path} was unreadable; kept it as {aside.name} and started a new record", file=sys.stderr)
        return {"version": 1, "attempts": []}


def save_results(path: Path, data: dict) -> None:
    """Write atomically: a crash mid-write never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as tmp:
        json.dump(data, tmp, indent=1)
    Path(tmp.name).replace(path)


# ------------------------------------------------------------------ the session

class NoInput(Exception):
    """stdin is closed or ran out."""


def ask(prompt: str) -> str:
    print(prompt, end="", flush=True)
    if sys.stdin is None or sys.stdin.closed:
        raise NoInput
    line = sys.stdin.readline()
    if not line:
        raise NoInput
    return line.strip().lower()


def describe(paths: tuple[str, ...]) -> str:
    return ", ".join(p + ("" if (ROOT / p).exists() else " (not written yet)") for p in paths) or "no lab yet"


def history(attempts: list, question: Question) -> str:
    past = [a for a in attempts if a.get("question") == question.id]
    return f"seen {len(past)}x, right {sum(bool(a.get('correct')) for a in past)}x before" if past else "first time"


def run_session(track: str, questions: list[Question], path: Path) -> int:
    data = load_results(path)
    previous = list(data["attempts"])
    right, missed = 0, []
    try:
        ask(f"{len(questions)} {track} questions. Press Enter to start (Ctrl-D or Ctrl-C to stop)... ")
        started = time.monotonic()
        for number, question in enumerate(questions, start=1):
            print(f"\n[{number}/{len(questions)}] {question.kind} · {question.id.split(':')[0]} · "
                  f"{history(previous, question)}\n{question.prompt}")
            shown = time.monotonic()
            ask("Answer aloud or on paper, then press Enter to see the reference answer... ")
            seconds = round(time.monotonic() - shown, 1)
            print(f"\n{question.answer}\n\nTaught in: {describe(question.taught_in)}   ({seconds:.0f} s)")
            verdict = ""
            while verdict not in ("y", "yes", "n", "no"):
                verdict = ask("Did you get it right? [y/n] ")
            correct = verdict.startswith("y")
            right += correct
            if not correct:
                missed.append(question)
            data["attempts"].append({"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                     "track": track, "question": question.id, "kind": question.kind,
                                     "correct": correct, "seconds": seconds})
            save_results(path, data)
    except NoInput:
        print()
        print(CLOSED_STDIN, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nstopped; {len(data['attempts']) - len(previous)} answers saved to {path}", file=sys.stderr)
        return 130
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    print(f"\n{right}/{len(questions)} right in {minutes}m{seconds:02d}s; results in {path}")
    for question in missed:
        print(f"  review: {question.prompt[:90]}\n          taught in {describe(question.taught_in)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quiz", description="Timed, self-graded interview practice.")
    parser.add_argument("--track", default="llm", help="llm or cv (default llm)")
    parser.add_argument("-n", "--count", type=int, default=5, help="questions to draw (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="draw the same questions every time")
    parser.add_argument("--kind", default="all", help="all, concepts or coding (default all)")
    parser.add_argument("--list", action="store_true", help="print every question and where it is taught; no quiz")
    args = parser.parse_args(argv)
    if args.track not in TRACKS:
        print(f"quiz: unknown track {args.track!r}; use --track llm or --track cv", file=sys.stderr)
        return 2
    if args.kind not in ("all", "concepts", "coding"):
        print(f"quiz: unknown kind {args.kind!r}; use --kind all, concepts or coding", file=sys.stderr)
        return 2
    if args.count < 1:
        print(f"quiz: -n must be at least 1, got {args.count}", file=sys.stderr)
        return 2
    questions = load_questions(args.track, args.kind)
    if args.list:
        for question in questions:
            print(f"{question.kind:<8} {question.id}\n         taught in: {describe(question.taught_in)}")
        print(f"{len(questions)} questions for the {args.track} track")
        return 0
    drawn = random.Random(args.seed).sample(questions, min(args.count, len(questions)))
    return run_session(args.track, drawn, results_path())


if __name__ == "__main__":
    sys.exit(main())
