"""The Dockerfile parser, on hand-written files whose stages and instructions are spelled out here."""
import pytest

TRICKY = """\
# syntax=docker/dockerfile:1
ARG PY=3.11.9
ARG REGISTRY

from --platform=linux/amd64 python:${PY}-slim As Builder
run apt-get update \\
    # a comment inside a continuation is dropped
    && apt-get install -y gcc \\

    && rm -rf /var/lib/apt/lists/*
FROM $REGISTRY/python:$PY-slim
COPY --from=builder /opt/venv /opt/venv
CMD ["python", "-V"]
"""


@pytest.mark.task("parse-dockerfile")
def test_continuations_and_comments_make_one_instruction(impl):
    parsed = impl.parse_dockerfile(TRICKY)
    run = parsed.stages[0].instructions
    assert [i.keyword for i in run] == ["RUN"], f"want one RUN in the first stage, got {[i.keyword for i in run]}"
    assert run[0].args == "apt-get update && apt-get install -y gcc && rm -rf /var/lib/apt/lists/*", \
        f"continuation lines must join with single spaces, without the comment; got {run[0].args!r}"
    assert run[0].line == 6, f"the RUN starts on line 6, got {run[0].line}"


@pytest.mark.task("parse-dockerfile")
def test_stages_names_and_global_args(impl):
    parsed = impl.parse_dockerfile(TRICKY)
    assert [(a.keyword, a.args) for a in parsed.args] == [("ARG", "PY=3.11.9"), ("ARG", "REGISTRY")]
    assert [s.name for s in parsed.stages] == ["builder", None], \
        f"'As Builder' names the stage builder (lower case); the second has no name; got {[s.name for s in parsed.stages]}"
    assert parsed.stages[0].base == "python:3.11.9-slim", \
        f"--platform is a flag and ${{PY}} takes the ARG default; got {parsed.stages[0].base!r}"
    assert parsed.stages[1].base == "$REGISTRY/python:3.11.9-slim", \
        f"an ARG without a default stays as written, $PY is filled; got {parsed.stages[1].base!r}"
    second = [(i.keyword, i.args, i.line) for i in parsed.stages[1].instructions]
    assert second == [("COPY", "--from=builder /opt/venv /opt/venv", 12), ("CMD", '["python", "-V"]', 13)], second


@pytest.mark.task("parse-dockerfile")
def test_a_file_ending_in_a_continuation_keeps_its_last_instruction(impl):
    parsed = impl.parse_dockerfile("FROM alpine:3.20\nRUN echo a \\\n    b \\")
    assert [(i.keyword, i.args) for i in parsed.stages[0].instructions] == [("RUN", "echo a b")]


@pytest.mark.task("parse-dockerfile")
@pytest.mark.parametrize("text, words", [("RUN echo hi\nFROM alpine:3.20\n", "RUN before the first FROM"),
                                         ("# only a comment\nARG X=1\n", "no FROM")])
def test_bad_files_get_a_one_line_reason(impl, text, words):
    with pytest.raises(ValueError) as err:
        impl.parse_dockerfile(text)
    assert words in str(err.value) and "\n" not in str(err.value), f"want a one-line reason with {words!r}, got {err.value}"


@pytest.mark.task("parse-dockerfile")
def test_the_shipped_dockerfile_has_a_builder_and_a_runtime(impl):
    parsed = impl.parse_dockerfile(impl.DOCKERFILE.read_text())
    assert [s.name for s in parsed.stages] == ["builder", "runtime"]
    assert all(s.base == "python:3.11.9-slim" for s in parsed.stages), [s.base for s in parsed.stages]
    assert parsed.stages[-1].instructions[-1].keyword == "CMD"
