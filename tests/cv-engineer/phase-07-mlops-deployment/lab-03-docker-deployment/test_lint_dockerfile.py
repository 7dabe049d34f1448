"""The Dockerfile rules: a good file passes, and each hand-made bad file trips exactly its own rule. The files
here are one instruction per line and are split by a small parser of this test, so the lint is judged alone."""
import pytest

GOOD = """\
FROM python:3.11.9-slim AS builder
RUN apt-get update && apt-get install -y build-essential
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt
FROM python:3.11.9-slim
RUN useradd --uid 10001 app
COPY --from=builder /opt/venv /opt/venv
COPY app.py .
USER app
HEALTHCHECK --interval=10s CMD ["python", "-c", "print(1)"]
CMD ["uvicorn", "app:app"]
"""


def simple_parse(impl, text):
    stages = []
    for number, line in enumerate(text.splitlines(), 1):
        keyword, _, rest = line.partition(" ")
        if keyword == "FROM":
            words = rest.split()
            stages.append(impl.Stage(base=words[0], name=words[2] if len(words) == 3 else None))
        else:
            stages[-1].instructions.append(impl.Instruction(keyword, rest, number))
    return impl.Dockerfile(args=[], stages=stages)


def edit(old, new):
    assert old in GOOD, old
    return GOOD.replace(old, new)


CMD = 'CMD ["uvicorn", "app:app"]\n'
BAD = {
    "multi-stage": [edit("AS builder\n", "\n"),
                    edit(GOOD.split("FROM python:3.11.9-slim\n")[0], "")],
    "pinned-base": [edit("python:3.11.9-slim AS", "python AS"), edit("python:3.11.9-slim AS", "python:latest AS"),
                    edit("python:3.11.9-slim AS", "localhost:5000/python AS")],
    "slim-runtime": [edit("FROM python:3.11.9-slim\n", "FROM python:3.11.9\n")],
    "copy-from-builder": [edit("COPY --from=builder /opt/venv", "COPY /opt/venv")],
    "no-build-tools": [edit("COPY app.py .\n", "COPY app.py .\nRUN apt-get install -y build-essential\n"),
                       edit("COPY app.py .\n", "COPY app.py .\nRUN apt-get update && apt-get install -y gcc\n"),
                       edit("COPY app.py .\n", "COPY app.py .\nRUN /opt/venv/bin/pip install -r extra.txt\n")],
    "pinned-requirements": [edit("--no-cache-dir -r /tmp/requirements.txt", "--no-cache-dir fastapi uvicorn"),
                            edit("--no-cache-dir -r /tmp/requirements.txt", "--no-cache-dir fastapi==0.165.0 uvicorn")],
    "non-root-user": [edit("USER app\n", ""), edit("USER app\n", "USER root\n"), edit("USER app\n", "USER 0:0\n"),
                      edit("USER app\n" + GOOD.split("USER app\n")[1], GOOD.split("USER app\n")[1] + "USER app\n")],
    "healthcheck": [edit("HEALTHCHECK --interval=10s CMD [\"python\", \"-c\", \"print(1)\"]\n", ""),
                    edit("HEALTHCHECK --interval=10s CMD [\"python\", \"-c\", \"print(1)\"]", "HEALTHCHECK NONE")],
    "exec-form-cmd": [edit(CMD, "CMD uvicorn app:app\n"), edit(CMD, "CMD ['uvicorn', 'app:app']\n")],
}
CASES = [(rule, i, text) for rule, texts in BAD.items() for i, text in enumerate(texts)]


@pytest.mark.task("lint-dockerfile")
def test_the_good_file_breaks_no_rule(impl):
    assert impl.lint_dockerfile(simple_parse(impl, GOOD)) == []


@pytest.mark.task("lint-dockerfile")
def test_build_tools_and_a_pinned_direct_install_are_fine_in_the_builder(impl):
    text = edit("--no-cache-dir -r /tmp/requirements.txt",
                "--no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu torch==2.14.1")
    text = text.replace("build-essential\n", "build-essential gcc\n")
    assert impl.lint_dockerfile(simple_parse(impl, text)) == [], "only the final stage must be free of compilers"


@pytest.mark.task("lint-dockerfile")
@pytest.mark.parametrize("rule, case, text", CASES, ids=[f"{r}-{i}" for r, i, _ in CASES])
def test_each_bad_file_breaks_exactly_its_rule(impl, rule, case, text):
    got = impl.lint_dockerfile(simple_parse(impl, text))
    assert got == [rule], f"case {case} of {rule!r} ({impl.RULES[rule]}): want [{rule!r}], got {got}"


@pytest.mark.task("lint-dockerfile")
def test_the_shipped_dockerfile_breaks_no_rule(impl):
    assert impl.lint_dockerfile(impl.parse_dockerfile(impl.DOCKERFILE.read_text())) == []
