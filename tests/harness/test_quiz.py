"""Practice mode (labkit.quiz) and the interview-prep documents it reads: every question parses, has an answer and
links to something that exists; the LLM cheatsheet answers all twenty curated questions; a session with answers
on stdin records them; closed stdin, bad arguments and a corrupt results file get one-line messages."""
import io
import json
import os
import re
import subprocess
import sys

import pytest

from labkit import quiz
from labkit.labs import ROOT
from labkit.scaffold import tasks_in

DOCS = sorted((ROOT / "interview-prep").glob("*/[0-9][0-9]-*.md"))
LINK = re.compile(r"\[[^\]]+\]\(([^)\s]+)\)")


def run_quiz(*args, stdin=None, cache):
    env = {**os.environ, "LABKIT_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "labkit.quiz", *args], input=stdin, capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=60,
                          stdin=subprocess.DEVNULL if stdin is None else None)


# ------------------------------------------------------------------ the documents

def test_the_eight_documents_exist():
    names = {str(p.relative_to(ROOT / "interview-prep")) for p in DOCS}
    expected = {"llm/01-concepts-cheatsheet.md", "llm/03-systems-questions.md",
                "llm/04-system-design-walkthroughs.md", "llm/05-research-engineering-questions.md",
                "llm/06-behavioral-questions.md", "cv/01-concepts-cheatsheet.md",
                "cv/03-system-design-walkthroughs.md", "cv/04-behavioral-questions.md"}
    assert expected <= names, f"missing documents: {sorted(expected - names)}"


@pytest.mark.parametrize("doc", [*DOCS, ROOT / "interview-prep" / "README.md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    prose = re.sub(r"^```.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.M | re.S)  # not code examples
    for target in LINK.findall(prose):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        if not (doc.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)} links to paths that do not exist: {broken}"


@pytest.mark.parametrize("track", quiz.TRACKS)
def test_every_question_has_an_answer_and_an_existing_lab(track):
    questions = quiz.load_questions(track, "concepts")
    assert len(questions) >= 25, f"{track}: expected at least 25 concept questions, found {len(questions)}"
    assert len({q.id for q in questions}) == len(questions), f"{track}: two questions share a title"
    for q in questions:
        assert len(q.answer.split()) >= 40, f"{q.id}: the answer is too short to be one ({len(q.answer.split())} words)"
        assert any((ROOT / p).exists() for p in q.taught_in), f"{q.id}: its Lab: line links to no existing lab"


def test_llm_cheatsheet_answers_the_curated_top_20():
    text = (ROOT / "interview-prep/llm/01-concepts-cheatsheet.md").read_text(encoding="utf-8")
    numbers = sorted(int(n) for n in re.findall(r"^Top-20: #(\d+)$", text, flags=re.M))
    assert numbers == list(range(1, 21)), f"each of the top-20 questions answered once; tags found: {numbers}"


@pytest.mark.parametrize("track", quiz.TRACKS)
def test_every_coding_task_is_a_question_with_its_cost(track):
    coding = quiz.coding_questions(quiz.CODING_LABS[track])
    tasks = tasks_in(ROOT / quiz.CODING_LABS[track] / "solution.py")
    assert [q.id.split("[")[1].rstrip("]") for q in coding] == tasks, "one coding question per task, in order"
    for q in coding:
        assert "O(" in q.answer, f"{q.id}: its docstrings state no complexity"
        assert f"TASK={q.id.split('[')[1].rstrip(']')}" in q.answer, f"{q.id}: no grading command"


def test_question_parsing_by_hand(tmp_path, monkeypatch):
    doc = tmp_path / "interview-prep" / "llm" / "01-x.md"
    doc.parent.mkdir(parents=True)
    (tmp_path / "labs" / "a").mkdir(parents=True)
    doc.write_text("# Title\n\n### Q: First?\nLab: [a](../../labs/a/), [web](https://example.com)\n\nAnswer one.\n"
                   "## Section\n### Not a question\ntext\n### Q: Second?\nAnswer two,\nover two lines.\n")
    monkeypatch.setattr(quiz, "ROOT", tmp_path)
    got = quiz.document_questions(doc)
    assert [(q.prompt, q.answer, q.taught_in) for q in got] == [
        ("First?", "Answer one.", ("labs/a",)), ("Second?", "Answer two,\nover two lines.", ())]


# ------------------------------------------------------------------ the command

def test_list_asks_nothing(tmp_path):
    done = run_quiz("--track", "cv", "--list", cache=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "taught in: cv-engineer/phase-01-classical-cv-opencv/lab-03-feature-detection" in done.stdout
    assert "[iou-nms]" in done.stdout and "questions for the cv track" in done.stdout
    assert not (tmp_path / quiz.RESULTS_FILE).exists(), "--list must not write results"


def test_closed_stdin_gives_one_line(tmp_path):
    done = run_quiz("--track", "llm", "-n", "2", cache=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "stdin" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize("args, says", [(("--track", "nlp"), "unknown track"), (("-n", "0"), "at least 1"),
                                        (("--kind", "trivia"), "unknown kind")])
def test_bad_arguments_get_one_line(tmp_path, args, says):
    done = run_quiz(*args, cache=tmp_path)
    assert done.returncode == 2 and says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_session_records_each_answer(tmp_path):
    # start, reveal, "y"; reveal, "maybe" (asked again), "n"
    done = run_quiz("--track", "llm", "-n", "2", "--seed", "3", stdin="\n\ny\n\nmaybe\nn\n", cache=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1/2 right" in done.stdout and "Taught in:" in done.stdout and "review:" in done.stdout
    attempts = json.loads((tmp_path / quiz.RESULTS_FILE).read_text())["attempts"]
    assert [a["correct"] for a in attempts] == [True, False]
    assert all(a["track"] == "llm" and a["seconds"] >= 0 for a in attempts)
    again = run_quiz("--track", "llm", "-n", "2", "--seed", "3", stdin="\n\ny\n\ny\n", cache=tmp_path)
    later = json.loads((tmp_path / quiz.RESULTS_FILE).read_text())["attempts"]
    assert [a["question"] for a in later[2:]] == [a["question"] for a in attempts], "a seed must repeat the draw"
    assert "seen 1x, right 1x before" in again.stdout, "the second session should show the first one's result"


def test_time_is_measured_per_question(tmp_path, monkeypatch):
    clock = iter([0.0, 100.0, 142.5, 200.0])  # session start, question shown, Enter pressed, session end
    monkeypatch.setattr(quiz.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n\nyes\n"))
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    assert quiz.main(["--track", "cv", "-n", "1", "--seed", "0"]) == 0
    (attempt,) = json.loads((tmp_path / quiz.RESULTS_FILE).read_text())["attempts"]
    assert attempt["seconds"] == 42.5 and attempt["correct"] is True


def test_running_out_of_answers_keeps_what_was_answered(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n\nn\n\n"))  # the second verdict never comes
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    assert quiz.main(["--track", "llm", "-n", "2", "--seed", "1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    attempts = json.loads((tmp_path / quiz.RESULTS_FILE).read_text())["attempts"]
    assert [a["correct"] for a in attempts] == [False], "the answered question must be saved"


def test_a_corrupt_results_file_is_kept_aside(tmp_path, monkeypatch, capsys):
    (tmp_path / quiz.RESULTS_FILE).write_text("{not json")
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n\ny\n"))
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    assert quiz.main(["--track", "cv", "-n", "1"]) == 0
    assert (tmp_path / (quiz.RESULTS_FILE + ".corrupt")).read_text() == "{not json"
    assert len(json.loads((tmp_path / quiz.RESULTS_FILE).read_text())["attempts"]) == 1
    assert "unreadable" in capsys.readouterr().err
