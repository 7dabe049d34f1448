"""Packaging lab 02's digit server as a container: a multi-stage Dockerfile and a compose file, checked statically.

The files this lab ships (`Dockerfile`, `compose.yaml`, `prometheus.yml`, `serve.py`) build an image that serves
lab 02's FastAPI app. A container engine is not always at hand (CI runners, this machine), so the graded work is
the tooling a reviewer runs on every change, whether or not anything can be built:

1. `parse_dockerfile`: Dockerfile text -> global ARGs and a list of stages, each with its instructions (line
   continuations joined, comments dropped, `FROM image AS name` split).
2. `lint_dockerfile`: the parsed file -> the rules it breaks (RULES below; each violation names its rule).
3. `check_compose`: a parsed compose document -> the rules it breaks (COMPOSE_RULES below).

`detect_engine` finds a working Docker or Podman (its `info` must answer within a timeout); with one, the tests
build the image, start it, poll /health over loopback, and report the image size and the cold-start time.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import labkit

HERE = Path(__file__).resolve().parent
REPO = labkit.ROOT                       # the build context: the image needs labkit/ and labs 01-02 as they are
DOCKERFILE, COMPOSE = HERE / "Dockerfile", HERE / "compose.yaml"
IMAGE = "cv-digit-server:0.1.0"

# The Dockerfile rules this lab enforces (rule id -> what it asks for).
RULES = {
    "multi-stage": "at least two stages, the first named builder (FROM ... AS builder)",
    "pinned-base": "every base image has an explicit tag that is not 'latest' (digests count as pinned)",
    "slim-runtime": "the final stage starts FROM a -slim (or distroless) image",
    "copy-from-builder": "the final stage takes the installed packages with COPY --from=builder",
    "no-build-tools": "the final stage installs no compilers (gcc, g++, build-essential, make) and keeps no pip cache",
    "pinned-requirements": "every pip install reads a requirements file (pinned with ==) or uses --require-hashes",
    "non-root-user": "the final stage switches to a non-root USER before its CMD",
    "healthcheck": "the final stage has a HEALTHCHECK with a command (not NONE)",
    "exec-form-cmd": "the final stage's CMD (or ENTRYPOINT) is exec form, a JSON array, so signals reach the server",
}
COMPOSE_RULES = {
    "services": "a 'services' mapping holding the server and prometheus, each with a build or an image",
    "healthcheck": "the server has a healthcheck with a test command",
    "loopback-ports": "every published port is bound to 127.0.0.1 (host:port:container)",
    "depends-healthy": "prometheus depends_on the server with condition: service_healthy",
    "read-only": "every service has read_only: true",
    "not-privileged": "no service is privileged or adds capabilities",
}
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "cmake")


# ---------------------------------------------------------------------------------------------- 1. parse

@dataclass
class Instruction:
    keyword: str          # upper case: FROM, RUN, COPY, ...
    args: str             # the rest of the logical line, continuations joined with single spaces
    line: int             # 1-based line where the instruction starts


@dataclass
class Stage:
    base: str             # the image after FROM (flags such as --platform removed, global ARG defaults filled in)
    name: str | None      # the name after AS, lower case, or None
    instructions: list[Instruction] = field(default_factory=list)   # everything after FROM, in order


@dataclass
class Dockerfile:
    args: list[Instruction]     # ARGs before the first FROM (they may be used in FROM lines)
    stages: list[Stage]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each instruction: a trailing backslash continues onto the next line; comment
    lines (# first) and blank lines are dropped, even in the middle of a continuation."""
    # BEGIN SOLUTION [parse-dockerfile] Skip blank and '#' lines everywhere; while a line ends with a backslash, drop it and keep collecting; remember where the instruction began.
    out, parts, start = [], [], 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not parts:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1].strip())
            continue
        parts.append(line)
        out.append((start, " ".join(p for p in parts if p)))
        parts = []
    if parts:                                          # a file that ends inside a continuation
        out.append((start, " ".join(p for p in parts if p)))
    return out
    # END SOLUTION


def expand(text: str, values: dict[str, str]) -> str:
    """Fill $NAME and ${NAME} from `values`; unknown names stay as written."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], m[0]), text)


def parse_dockerfile(text: str) -> Dockerfile:
    """Dockerfile text -> its global ARGs and stages. `$NAME` / `${NAME}` in a FROM line take the default of a
    global `ARG NAME=default` (one without a default stays as written). Raises ValueError (one line) for an
    instruction before the first FROM other than ARG, or a file with no FROM."""
    # BEGIN SOLUTION [parse-dockerfile] Keyword = first word, upper-cased; FROM starts a stage (skip --flags, 'AS' in any case names it); before any FROM only ARG is allowed.
    args, stages, defaults = [], [], {}
    for number, line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            name = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(base=expand(words[0], defaults), name=name))
        elif not stages:
            if keyword != "ARG":
                raise ValueError(f"line {number}: {keyword} before the first FROM; only ARG may come before FROM")
            args.append(Instruction(keyword, rest, number))
            arg_name, eq, default = rest.partition("=")
            if eq:
                defaults[arg_name.strip()] = default.strip().strip('"')
        else:
            stages[-1].instructions.append(Instruction(keyword, rest, number))
    if not stages:
        raise ValueError("no FROM instruction: a Dockerfile needs at least one stage")
    return Dockerfile(args, stages)
    # END SOLUTION


# ---------------------------------------------------------------------------------------------- 2. lint

def is_pinned(image: str) -> bool:
    """python:3.11.9-slim and x@sha256:... are pinned; python, python:latest are not (a registry port is no tag)."""
    if "$" in image:
        return False                                   # a build argument with no default: anything goes
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.split(":", 1)[1] not in ("", "latest")


VALUE_OPTIONS = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-c", "--constraint", "-t",
                 "--target", "--prefix", "--root"}


def pip_pinned(command: str) -> bool:
    """True when every `pip install` in a RUN line installs from a requirements file, with --require-hashes, or
    names only `package==version` pins."""
    for part in re.split(r"&&|;|\|\|", command):
        words = part.split()
        if "pip" not in " ".join(words) or "install" not in words:
            continue
        words = words[words.index("install") + 1:]
        if {"-r", "--requirement", "--require-hashes"} & set(words):
            continue
        skip = False
        for word in words:
            if skip:
                skip = False
            elif word in VALUE_OPTIONS:
                skip = True
            elif not word.startswith("-") and "==" not in word:
                return False
    return True


def lint_dockerfile(parsed: Dockerfile) -> list[str]:
    """The ids of RULES the file breaks, each once, in RULES' order."""
    broken = set()
    # BEGIN SOLUTION [lint-dockerfile] Judge the FINAL stage for runtime rules (slim, COPY --from, tools, USER, HEALTHCHECK, CMD); USER must be non-root and come before CMD; pip rules apply to every stage.
    stages, final = parsed.stages, parsed.stages[-1]
    if len(stages) < 2 or stages[0].name != "builder":
        broken.add("multi-stage")
    if not all(is_pinned(stage.base) for stage in stages):
        broken.add("pinned-base")
    if not ("-slim" in final.base or "distroless" in final.base):
        broken.add("slim-runtime")
    final_by = [(i.keyword, i.args) for i in final.instructions]
    if not any(k == "COPY" and re.search(r"--from=builder\b", a) for k, a in final_by):
        broken.add("copy-from-builder")
    for keyword, args in final_by:
        words = set(re.split(r"[\s;&|]+", args))
        if keyword == "RUN" and (words & set(BUILD_TOOLS)):
            broken.add("no-build-tools")
        if keyword == "RUN" and "pip install" in args and "--no-cache-dir" not in args:
            broken.add("no-build-tools")
    for stage in stages:
        for i in stage.instructions:
            if i.keyword == "RUN" and "pip install" in i.args and not pip_pinned(i.args):
                broken.add("pinned-requirements")
    cmd_at = max((n for n, (k, _) in enumerate(final_by) if k in ("CMD", "ENTRYPOINT")), default=None)
    users = [(n, a.split(":")[0].strip()) for n, (k, a) in enumerate(final_by) if k == "USER"]
    last_user = [u for n, u in users if cmd_at is None or n < cmd_at]
    if not last_user or last_user[-1] in ("root", "0"):
        broken.add("non-root-user")
    checks = [a for k, a in final_by if k == "HEALTHCHECK"]
    if not checks or checks[-1].upper().startswith("NONE"):
        broken.add("healthcheck")
    if cmd_at is None or not final_by[cmd_at][1].startswith("["):
        broken.add("exec-form-cmd")
    else:
        try:
            json.loads(final_by[cmd_at][1])
        except json.JSONDecodeError:
            broken.add("exec-form-cmd")
    # END SOLUTION
    return [rule for rule in RULES if rule in broken]


def requirements_pinned(text: str) -> list[str]:
    """The lines of a requirements file that are not an exact `name==version` pin (comments and blanks allowed)."""
    loose = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[A-Za-z0-9_.+!\-]+( *\\)?", line):
            loose.append(line)
    return loose


# ---------------------------------------------------------------------------------------------- 3. compose

def check_compose(doc: dict, server: str = "server", metrics: str = "prometheus") -> list[str]:
    """The ids of COMPOSE_RULES a parsed compose document breaks, each once, in COMPOSE_RULES' order."""
    broken = set()
    # BEGIN SOLUTION [check-compose] Short port syntax is "host_ip:host:container" (three parts, first 127.0.0.1) or a mapping with host_ip; depends_on may be a list (no condition) or a mapping.
    services = doc.get("services") if isinstance(doc, dict) else None
    if not isinstance(services, dict) or server not in services or metrics not in services \
            or not all({"build", "image"} & set(service or {}) for service in services.values()):
        broken.add("services")
        services = services if isinstance(services, dict) else {}
    health = (services.get(server) or {}).get("healthcheck") or {}
    if not health.get("test") or health.get("disable"):
        broken.add("healthcheck")
    for service in services.values():
        service = service or {}
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else \
                (str(port).split(":")[0] if str(port).count(":") == 2 else None)
            if host_ip != "127.0.0.1":
                broken.add("loopback-ports")
        if service.get("read_only") is not True:
            broken.add("read-only")
        if service.get("privileged") or service.get("cap_add"):
            broken.add("not-privileged")
    needs = (services.get(metrics) or {}).get("depends_on") or {}
    if not isinstance(needs, dict) or (needs.get(server) or {}).get("condition") != "service_healthy":
        broken.add("depends-healthy")
    # END SOLUTION
    return [rule for rule in COMPOSE_RULES if rule in broken]


# ---------------------------------------------------------------------------------------------- 4. engine

def detect_engine(timeout: float = 10.0) -> tuple[str | None, str]:
    """(engine, reason): the first of docker / podman whose `info` answers within `timeout` seconds, or
    (None, why none works). A docker client with no daemon behind it does not count."""
    reasons = []
    for name in ("docker", "podman"):
        exe = shutil.which(name)
        if exe is None:
            reasons.append(f"no {name} on PATH")
            continue
        try:
            done = subprocess.run([exe, "info", "--format", "{{json .}}"], capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            reasons.append(f"'{name} info' did not answer within {timeout:.0f} s")
            continue
        if done.returncode == 0:
            return name, f"'{name} info' answered"
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        reasons.append(f"'{name} info' failed: {last[:160]}")
    return None, "no container engine: " + "; ".join(reasons)


def build_and_run(engine: str, port: int, timeout: float = 900.0) -> dict:
    """Build IMAGE from REPO, start it on 127.0.0.1:port, wait for /health. Returns the image size (MB) and the
    cold start (seconds from `run` to the first 200 on /health). Always removes the container."""
    model = labkit.reuse("lab-02-fastapi-server").model_file()
    subprocess.run([engine, "build", "-f", str(DOCKERFILE), "-t", IMAGE, str(REPO)], check=True, timeout=timeout)
    size = int(subprocess.run([engine, "image", "inspect", IMAGE, "--format", "{{.Size}}"], check=True,
                              capture_output=True, text=True, timeout=60).stdout.strip())
    name = f"cv-digit-server-{port}"
    start = time.perf_counter()
    subprocess.run([engine, "run", "-d", "--rm", "--name", name, "--read-only", "--tmpfs", "/tmp",
                    "-p", f"127.0.0.1:{port}:8000", "-v", f"{model.parent}:/models:ro", IMAGE],
                   check=True, capture_output=True, timeout=120)
    try:
        while time.perf_counter() - start < 180:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        return {"image_mb": size / 1e6, "cold_start_s": time.perf_counter() - start}
            except OSError:
                time.sleep(0.5)
        raise TimeoutError("the container did not answer /health within 180 s; see `docker logs`")
    finally:
        subprocess.run([engine, "rm", "-f", name], capture_output=True, timeout=60)


# ---------------------------------------------------------------------------------------------- demo

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="also build and run the image if an engine exists")
    args = parser.parse_args(argv)
    parsed = parse_dockerfile(DOCKERFILE.read_text())
    stages = ", ".join(f"{stage.name or 'unnamed'} <- {stage.base}" for stage in parsed.stages)
    print(f"{DOCKERFILE.name}: {len(parsed.stages)} stages ({stages})")
    print(f"  Dockerfile rules broken: {lint_dockerfile(parsed) or 'none'}")
    print(f"  compose rules broken:    {check_compose(yaml.safe_load(COMPOSE.read_text())) or 'none'}")
    loose = requirements_pinned((HERE / "requirements-serve.txt").read_text())
    print(f"  unpinned serving requirements: {loose or 'none'}")
    engine, reason = detect_engine()
    print(f"container engine: {engine or 'none'} ({reason})")
    if engine and args.build:
        figures = build_and_run(engine, port=18000)
        print(f"image {IMAGE}: {figures['image_mb']:.0f} MB, cold start {figures['cold_start_s']:.1f} s")


if __name__ == "__main__":
    labkit.run(main)
