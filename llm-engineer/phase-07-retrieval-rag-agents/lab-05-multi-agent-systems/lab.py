"""Lab 05: a small multi-agent system: planner, worker and critic over a message bus and a shared blackboard.

What you build, one idea per function:
  a message bus (one inbox per agent, a full log, a hard turn limit shared by the whole team)
  -> a blackboard: shared memory every agent reads, with the author and version of every write
  -> a cost ledger: prompt and reply tokens per agent, so "more agents" comes with a price tag
  -> a grounded critic that accepts an answer only when a computation on the blackboard backs it
  -> the orchestrator: plan -> work (lab 04's ReAct loop and tools) -> critique -> revise, within the limits
  -> the comparison: one agent alone versus the team, on lab 04's multi-step tasks.

Scripted models make the mechanics testable and show the pattern the team is built for (a worker that answers
too early is sent back by the critic); the real run uses SmolLM2-135M for every role, with lab 04's constrained
decoding so each reply is valid JSON.

Run it:  python solution.py                (scripted comparison, then SmolLM2 on 3 tasks)
         python solution.py --tasks 10     (SmolLM2 on all 10 tasks, several minutes on 2 cores)
"""
# This file is generated from solution.py by `make scaffold`; edit the TODOs, not the generator's output.
# Check your work with `make check LAB=<this lab's folder>`.
from __future__ import annotations

import argparse
import inspect
import json
import re
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypedDict

import torch
from langgraph.graph import END, START, StateGraph
from tqdm import tqdm

import labkit
from labkit import assets

agents = labkit.reuse("lab-04-agents-tool-use")  # tools, ReAct loop, scripted model, constrained decoding


# ---------------------------------------------------------------- the message bus

class TurnLimitReached(RuntimeError):
    pass


@dataclass
class Message:
    turn: int
    sender: str
    recipient: str
    kind: str  # "task" | "plan" | "answer" | "verdict" | ...
    content: object


class MessageBus:
    """Point-to-point messages with one FIFO inbox per recipient, a log of everything sent, and a turn counter
    that every agent call draws from: the team as a whole gets `max_turns` model calls."""

    def __init__(self, max_turns: int = 20):
        if max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {max_turns}")
        self.max_turns = max_turns
        self.turns = 0
        self.log: list[Message] = []
        self.inboxes: dict[str, deque[Message]] = defaultdict(deque)

    def publish(self, sender: str, recipient: str, kind: str, content: object) -> Message:
        # TODO [message-bus]: Stamp the message with the current turn, log it, queue it in the recipient's inbox.
        raise NotImplementedError("TODO [message-bus]: Stamp the message with the current turn, log it, queue it in the recipient's inbox.")

    def receive(self, agent: str) -> list[Message]:
        """Every message waiting for `agent`, oldest first; the inbox is empty afterwards."""
        # TODO [message-bus]: Drain the agent's deque from the left.
        raise NotImplementedError("TODO [message-bus]: Drain the agent's deque from the left.")

    def take_turn(self, agent: str) -> int:
        """Count one model call; raise TurnLimitReached once the team's budget is spent."""
        # TODO [message-bus]: Refuse when turns == max_turns (naming the agent), else increment and return the new count.
        raise NotImplementedError('TODO [message-bus]: Refuse when turns == max_turns (naming the agent), else increment and return the new count.')


# ---------------------------------------------------------------- shared memory

@dataclass
class Entry:
    key: str
    value: object
    author: str
    version: int


class Blackboard:
    """Shared memory: the latest value per key, plus every write in order (who wrote what, which version)."""

    def __init__(self):
        self.current: dict[str, Entry] = {}
        self.history: list[Entry] = []

    def write(self, key: str, value: object, author: str) -> Entry:
        if not key:
            raise ValueError("a blackboard key must be a non-empty string")
        # TODO [blackboard]: The new version is one more than the key's current one (1 for a new key); store it as current and append to history.
        raise NotImplementedError("TODO [blackboard]: The new version is one more than the key's current one (1 for a new key); store it as current and append to history.")

    def read(self, key: str, default=None):
        entry = self.current.get(key)
        return entry.value if entry else default

    def snapshot(self) -> dict:
        """{key: value} of the current entries, in first-written order."""
        # TODO [blackboard]: A dict comprehension over the current entries.
        raise NotImplementedError('TODO [blackboard]: A dict comprehension over the current entries.')


# ---------------------------------------------------------------- cost accounting

class CostLedger:
    """Tokens in (the whole prompt, every call: agents re-read their context) and out, per agent."""

    def __init__(self, count_tokens: Callable[[str], int]):
        self.count_tokens = count_tokens
        self.per_agent: dict[str, dict[str, int]] = {}

    def record(self, agent: str, prompt: str, reply: str) -> None:
        # TODO [cost-ledger]: Per agent: calls += 1, tokens_in += count(prompt), tokens_out += count(reply).
        raise NotImplementedError('TODO [cost-ledger]: Per agent: calls += 1, tokens_in += count(prompt), tokens_out += count(reply).')

    def total(self) -> dict[str, int]:
        keys = ("calls", "tokens_in", "tokens_out")
        return {k: sum(row[k] for row in self.per_agent.values()) for k in keys}


def gpt2_token_counter() -> Callable[[str], int]:
    encoding = assets.tiktoken_encoding("gpt2")
    return lambda text: len(encoding.encode(text, disallowed_special=()))


class Agent:
    """A named role around a model callable: each call takes a turn from the bus and is charged to the ledger."""

    def __init__(self, name: str, model: Callable[[list[dict]], str], bus: MessageBus, ledger: CostLedger):
        self.name, self.model, self.bus, self.ledger = name, model, bus, ledger

    def __call__(self, messages: list[dict]) -> str:
        self.bus.take_turn(self.name)
        reply = self.model(messages)
        self.ledger.record(self.name, "\n".join(m["content"] for m in messages), reply)
        return reply


# ---------------------------------------------------------------- the critic

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
COMPUTE_TOOLS = ("calculator", "python")


def grounded_verdict(answer: str | None, board: dict) -> dict:
    """The rule a careful reviewer applies to these tasks: an answer is accepted only when its first number equals
    (to 0.01) the latest calculator/python result on the blackboard. Otherwise a revise verdict says why."""
    # TODO [grounded-critic]: Find the last board entry whose key starts with a compute tool; compare the first numbers of it and of the answer (commas removed).
    raise NotImplementedError('TODO [grounded-critic]: Find the last board entry whose key starts with a compute tool; compare the first numbers of it and of the answer (commas removed).')


class GroundedCritic:
    """A deterministic critic model: reads the JSON the orchestrator sends and applies grounded_verdict."""

    def __call__(self, messages: list[dict]) -> str:
        review = json.loads(messages[-1]["content"])
        return json.dumps(grounded_verdict(review["answer"], review["blackboard"]))


# ---------------------------------------------------------------- the orchestrator

PLANNER_SYSTEM = "You are the planner. Split the task into short steps. Reply as JSON: {\"plan\": \"step 1; step 2\"}."
CRITIC_SYSTEM = ("You are the critic. Accept the answer only if a calculation on the blackboard backs it. Reply as "
                 "JSON: {\"verdict\": \"accept\" or \"revise\", \"feedback\": \"...\"}.")


@dataclass
class TeamResult:
    answer: str | None
    stop_reason: str  # "accepted" | "revisions_exhausted" | "turn_limit"
    turns: int
    revisions: int
    board: Blackboard = field(default_factory=Blackboard)


def parse_plan(reply: str) -> list[str]:
    """Steps from {"plan": "a; b"} or {"plan": ["a", "b"]}; a reply that is not such JSON becomes one step."""
    try:
        plan = json.loads(reply).get("plan", "")
    except (json.JSONDecodeError, AttributeError):
        return [reply.strip()]
    steps = plan if isinstance(plan, list) else re.split(r"[;\n]", str(plan))
    return [str(s).strip() for s in steps if str(s).strip()] or [reply.strip()]


def parse_verdict(reply: str) -> dict:
    """{"verdict": "accept"|"revise", "feedback": str}; anything unreadable counts as a revise."""
    try:
        data = json.loads(reply)
        if data.get("verdict") in ("accept", "revise"):
            return {"verdict": data["verdict"], "feedback": str(data.get("feedback", ""))}
    except (json.JSONDecodeError, AttributeError):
        pass
    return {"verdict": "revise", "feedback": "the critic's reply was unreadable"}


def tool_calls(messages: list[dict]) -> list[tuple[str, dict, str]]:
    """(tool, args, observation) for each executed call in a ReAct transcript from lab 04's run_agent."""
    calls = []
    for reply, answer in zip(messages, messages[1:]):
        if reply["role"] != "assistant" or answer["role"] != "user":
            continue
        try:
            action = json.loads(reply["content"])
        except json.JSONDecodeError:
            continue
        if isinstance(action, dict) and "tool" in action:
            calls.append((action["tool"], action.get("args", {}), answer["content"].removeprefix("Observation: ")))
    return calls


def run_team(task: str, planner: Agent, worker: Agent, critic: Agent, registry, bus: MessageBus,
             board: Blackboard | None = None, max_revisions: int = 2, worker_steps: int = 4) -> TeamResult:
    """Plan once, then up to 1 + max_revisions rounds of (worker's ReAct loop -> critic's verdict).

    Everything an agent learns goes on the blackboard (plan, each tool result, the answer, the verdict); every
    hand-over goes through the bus. A spent turn budget ends the run wherever it happens.
    """
    board = board or Blackboard()
    revisions = 0
    # TODO [orchestrator]: Planner -> board["plan"]; each round: worker runs lab 04's run_agent on task + plan + board + feedback, tool results and the answer go to the board, the critic reviews JSON {task, answer, blackboard}; accept ends it; TurnLimitReached ends it too.
    raise NotImplementedError('TODO [orchestrator]: Planner -> board["plan"]; each round: worker runs lab 04\'s run_agent on task + plan + board + feedback, tool results and the answer go to the board, the critic reviews JSON {task, answer, blackboard}; accept ends it; TurnLimitReached ends it too.')


def run_single(task: str, model, registry, ledger: CostLedger, max_turns: int = 8) -> tuple[str | None, str]:
    """The baseline: one agent, lab 04's loop, the same turn budget idea and the same ledger."""
    bus = MessageBus(max_turns)
    try:
        result = agents.run_agent(Agent("single", model, bus, ledger), registry, task, max_steps=max_turns)
        return result.answer, result.stop_reason
    except TurnLimitReached:
        return None, "turn_limit"


# ---------------------------------------------------------------- the same team in LangGraph

# The orchestrator above is a hand-written state machine. LangGraph makes the machine explicit: a typed state, nodes
# that return updates to it, and edges (fixed or conditional) that pick the next node. Same agents, same bus, same
# blackboard: only the control flow moves into the framework.

class TeamState(TypedDict, total=False):
    task: str
    plan: list[str]
    answer: str | None
    verdict: dict
    feedback: str | None
    rounds: int  # worker rounds done so far


def worker_brief(task: str, plan: list[str], board: Blackboard, feedback: str | None) -> str:
    """What the worker is told at the start of a round: the task, the plan, results known so far, the critique."""
    lines = [f"Task: {task}", "Plan: " + "; ".join(plan)]
    known = {k: v for k, v in board.snapshot().items() if k not in ("plan", "answer", "verdict")}
    if known:
        lines.append("Known results: " + json.dumps(known))
    if feedback:
        lines.append(f"Critic feedback: {feedback}")
    return "\n".join(lines)


def build_team_graph(planner: Agent, worker: Agent, critic: Agent, registry, bus: MessageBus, board: Blackboard,
                     max_revisions: int = 2, worker_steps: int = 4):
    """plan -> work -> critique as a compiled LangGraph; critique loops back to work while the critic asks for a
    revision and rounds remain (1 + max_revisions worker rounds at most)."""
    # TODO [langgraph-team]: Three node functions that do one role's step and return a partial state; edges START -> plan -> work -> critique; a conditional edge from critique to "work" or END.
    raise NotImplementedError('TODO [langgraph-team]: Three node functions that do one role\'s step and return a partial state; edges START -> plan -> work -> critique; a conditional edge from critique to "work" or END.')


def run_team_langgraph(task: str, planner: Agent, worker: Agent, critic: Agent, registry, bus: MessageBus,
                       board: Blackboard | None = None, max_revisions: int = 2, worker_steps: int = 4) -> TeamResult:
    """run_team's contract, with LangGraph running the control flow. The bus's turn limit still ends a run;
    LangGraph's own recursion limit (node visits) is set just above the longest legal run as a second fence."""
    board = board or Blackboard()
    graph = build_team_graph(planner, worker, critic, registry, bus, board, max_revisions, worker_steps)
    answers = lambda: sum(entry.key == "answer" for entry in board.history)  # noqa: E731 - worker rounds done
    try:
        state = graph.invoke({"task": task}, {"recursion_limit": 2 + 2 * (max_revisions + 1)})
    except TurnLimitReached:
        return TeamResult(board.read("answer"), "turn_limit", bus.turns, max(answers() - 1, 0), board)
    accepted = state["verdict"]["verdict"] == "accept" and state["answer"] is not None
    return TeamResult(state["answer"], "accepted" if accepted else "revisions_exhausted", bus.turns,
                      state["rounds"] - 1, board)


# ---------------------------------------------------------------- voting (self-consistency across workers)

def normalise_answer(answer: object) -> str | None:
    """The form two answers are compared in: the first number (commas dropped, 456.0 -> '456'), else the trimmed,
    lower-cased text; None or blank text abstains."""
    # TODO [voting]: Search NUMBER in the text without commas; float -> '%g'-style without trailing zeros; else strip().lower(); '' -> None.
    raise NotImplementedError("TODO [voting]: Search NUMBER in the text without commas; float -> '%g'-style without trailing zeros; else strip().lower(); '' -> None.")


def majority_vote(answers: list) -> tuple[str | None, int]:
    """(winning normalised answer, its votes). Abstentions do not count; a tie goes to the answer first given."""
    # TODO [voting]: Count normalised answers in first-seen order (a dict), skip None, take the first with the top count.
    raise NotImplementedError('TODO [voting]: Count normalised answers in first-seen order (a dict), skip None, take the first with the top count.')


def run_voting(task: str, workers: list[Callable], registry, worker_steps: int = 6) -> tuple[str | None, int, list]:
    """Each worker solves the task on its own (lab 04's loop); the team answers with the majority."""
    answers = [agents.run_agent(worker, registry, task, max_steps=worker_steps).answer for worker in workers]
    winner, votes = majority_vote(answers)
    return winner, votes, answers


# ---------------------------------------------------------------- a code-review crew: writer, test writer, reviewer

CREW_PROBLEMS = Path(__file__).resolve().parent / "data" / "crew_problems.jsonl"
REPORT_TAG = "CREW-REPORT "
# Appended after the candidate code and the tests, inside the sandbox: runs every test_* function, prints one line.
TEST_RUNNER = f'''
import json as _json
_passed, _failed = [], []
for _name, _test in list(globals().items()):
    if _name.startswith("test_") and callable(_test):
        try:
            _test()
            _passed.append(_name)
        except Exception as _err:
            _failed.append(f"{{_name}}: {{type(_err).__name__}}: {{_err}}"[:200])
print("{REPORT_TAG}" + _json.dumps({{"passed": _passed, "failed": _failed}}))
'''


def load_crew_problems(path: Path = CREW_PROBLEMS) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run_tests_in_sandbox(code: str, tests: str, timeout: float = 5.0) -> dict:
    """Candidate code + test functions in lab 04's sandbox (own process, limits, no network).

    {"passed": [names], "failed": ["name: error"], "error": None} when the tests ran; when the code did not even
    load (syntax error, crash, timeout), "error" holds the sandbox's one-line reason and nothing passed."""
    # TODO [code-crew]: agents.run_python(code + tests + TEST_RUNNER); take the LAST line that starts with REPORT_TAG; no such line -> error from the result's observation().
    raise NotImplementedError("TODO [code-crew]: agents.run_python(code + tests + TEST_RUNNER); take the LAST line that starts with REPORT_TAG; no such line -> error from the result's observation().")


def tests_pass(report: dict) -> bool:
    return report["error"] is None and not report["failed"] and bool(report["passed"])


@dataclass
class CrewResult:
    code: str
    stop_reason: str  # "accepted" | "rounds_exhausted"
    rounds: int
    own_tests: dict  # the test writer's tests on the final code
    held_out: dict  # the lab's shipped tests on the final code: the crew never sees them


WRITER_SYSTEM = "You write one Python function that solves the problem. Reply with the code only."
TEST_WRITER_SYSTEM = "You write pytest-style test functions (def test_...) for the problem. Reply with code only."
REVIEWER_SYSTEM = ("You review code with its test results. Reply as JSON: {\"verdict\": \"accept\" or \"revise\", "
                   "\"feedback\": \"...\"}.")


def code_review_crew(problem: dict, writer: Callable, test_writer: Callable, reviewer: Callable,
                     max_rounds: int = 3) -> CrewResult:
    """The test writer writes tests once; each round the writer writes (or rewrites) the code, the code runs
    against those tests in the sandbox, and the reviewer reads code + results. The crew stops when the reviewer
    accepts AND its own tests pass (a reviewer cannot wave failing code through). The lab's shipped tests are
    held out: they only score the final code."""
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
    ask = lambda system, text: [{"role": "system", "content": system}, {"role": "user", "content": text}]  # noqa: E731
    # TODO [code-crew]: tests = test_writer(...) once; per round: code = writer(prompt + feedback), report = run_tests_in_sandbox(code, tests), verdict = parse_verdict(reviewer(JSON of problem, code, report)); accept only when tests_pass(report); the feedback of the next round names the failures.
    raise NotImplementedError('TODO [code-crew]: tests = test_writer(...) once; per round: code = writer(prompt + feedback), report = run_tests_in_sandbox(code, tests), verdict = parse_verdict(reviewer(JSON of problem, code, report)); accept only when tests_pass(report); the feedback of the next round names the failures.')


class ReportReviewer:
    """A deterministic reviewer model: accepts exactly when the test report it is shown is clean."""

    def __call__(self, messages: list[dict]) -> str:
        report = json.loads(messages[-1]["content"])["tests"]
        if tests_pass(report):
            return json.dumps({"verdict": "accept", "feedback": "all tests pass"})
        reason = report["error"] or f"{len(report['failed'])} test(s) fail"
        return json.dumps({"verdict": "revise", "feedback": f"fix the code: {reason}"})


def scripted_crew(problem: dict) -> dict:
    """The crew's scripted models: the writer's first draft (buggy in two of the three problems), then a fix."""
    return {"writer": agents.ScriptedModel([problem["draft"], problem["fixed"], problem["fixed"]]),
            "test_writer": agents.ScriptedModel([problem["writer_tests"]]),
            "reviewer": ReportReviewer()}


# ---------------------------------------------------------------- scripted scenario and the comparison

def hasty_worker_script(task: dict, hasty: bool) -> list[dict]:
    """Lab 04's reference tool calls; a hasty worker first answers straight after its first search (the classic
    premature-answer failure), then, if asked again, finishes the job."""
    script = task["script"]
    if not hasty:
        return script
    early = {"thought": "The search result looks like the answer.", "final_answer": "{last}"}
    return [script[0], early, *script[1:]]


def compare(tasks: list[dict], make_models: Callable[[dict], dict], count_tokens, registry, max_turns: int = 12,
            progress: bool = False) -> dict:
    """Success and token costs of the single agent and of the team on the same tasks.

    make_models(task) -> {"single": model, "planner": ..., "worker": ..., "critic": ...} (fresh per task)."""
    rows = {"single": [], "team": []}
    ledgers = {"single": CostLedger(count_tokens), "team": CostLedger(count_tokens)}
    for task in tqdm(tasks, desc="tasks", disable=not progress):
        models = make_models(task)
        answer, _ = run_single(task["question"], models["single"], registry, ledgers["single"], max_turns)
        rows["single"].append(agents.solved(answer, task))
        bus = MessageBus(max_turns)
        team = {role: Agent(role, models[role], bus, ledgers["team"]) for role in ("planner", "worker", "critic")}
        result = run_team(task["question"], team["planner"], team["worker"], team["critic"], registry, bus)
        rows["team"].append(agents.solved(result.answer, task))
    return {name: {"solved": sum(ok), "of": len(ok), **ledgers[name].total(),
                   "per_agent": ledgers[name].per_agent} for name, ok in rows.items()}


def scripted_models(task: dict) -> dict:
    index = int(task["id"].lstrip("t"))
    hasty = index % 2 == 0  # every other task: the worker answers too early
    return {"single": agents.ScriptedModel(hasty_worker_script(task, hasty)),
            "planner": agents.ScriptedModel([{"plan": "look up the facts; compute; answer with the number"}]),
            "worker": agents.ScriptedModel(hasty_worker_script(task, hasty)),
            "critic": GroundedCritic()}


class ConstrainedRole:
    """SmolLM2 in a fixed role, its reply decoded under a flat JSON schema (lab 04's constrained decoding)."""

    def __init__(self, model, tokenizer, vocab, schema: dict):
        self.model, self.tokenizer, self.vocab = model, tokenizer, vocab
        self.machine = agents.JsonSchemaMachine(schema)

    def __call__(self, messages: list[dict]) -> str:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        return agents.constrained_generate(self.model, self.vocab, self.machine, ids)


def print_comparison(title: str, result: dict) -> None:
    print(f"\n{title}")
    print(f"  {'setup':<8}{'solved':>8}{'calls':>7}{'tokens in':>11}{'tokens out':>12}")
    for name, row in result.items():
        print(f"  {name:<8}{row['solved']:>5}/{row['of']:<2}{row['calls']:>7}{row['tokens_in']:>11}{row['tokens_out']:>12}")
    for agent, row in result["team"]["per_agent"].items():
        print(f"    team {agent:<8} calls {row['calls']:>3}  in {row['tokens_in']:>6}  out {row['tokens_out']:>5}")


def framework_comparison(tasks: list[dict], count_tokens, registry, max_turns: int) -> None:
    """The hand-written orchestrator and the LangGraph one on the same scripted tasks, side by side."""
    print("\nfrom scratch vs LangGraph, same agents and scripted models on all tasks:")
    print(f"  {'orchestrator':<13}{'solved':>8}{'calls':>7}{'tokens in':>11}  stop reasons")
    for name, runner in [("from scratch", run_team), ("LangGraph", run_team_langgraph)]:
        ledger, solved, reasons = CostLedger(count_tokens), 0, defaultdict(int)
        for task in tasks:
            models, bus = scripted_models(task), MessageBus(max_turns)
            team = {role: Agent(role, models[role], bus, ledger) for role in ("planner", "worker", "critic")}
            result = runner(task["question"], team["planner"], team["worker"], team["critic"], registry, bus)
            solved += agents.solved(result.answer, task)
            reasons[result.stop_reason] += 1
        total = ledger.total()
        print(f"  {name:<13}{solved:>5}/{len(tasks):<2}{total['calls']:>7}{total['tokens_in']:>11}  {dict(reasons)}")
    lines = {name: len(inspect.getsource(fn).splitlines()) for name, fn in
             [("run_team", run_team), ("build_team_graph + run_team_langgraph", build_team_graph)]}
    lines["build_team_graph + run_team_langgraph"] += len(inspect.getsource(run_team_langgraph).splitlines())
    print("  lines of control-flow code: " + ", ".join(f"{k} {v}" for k, v in lines.items()))


def voting_demo(task: dict, registry) -> None:
    """Five scripted workers, two of them hasty: the majority still lands on the computed answer."""
    workers = [agents.ScriptedModel(hasty_worker_script(task, hasty)) for hasty in (True, False, True, False, False)]
    winner, votes, answers = run_voting(task["question"], workers, registry)
    print(f"\nvoting on {task['id']}: answers {[a[:24] if a else a for a in answers]}")
    print(f"  majority {winner!r} with {votes}/5 votes; solved: {agents.solved(winner, task)} (expected {task['answer']})")


def crew_demo() -> None:
    """The code-review crew on the shipped problems, with the writer's first draft alone as the baseline."""
    print("\ncode-review crew (scripted writer, test writer and a reviewer that reads the sandbox's test report):")
    print(f"  {'problem':<16}{'draft alone: held-out tests':>29}{'crew: rounds':>14}{'held-out tests':>16}")
    for problem in load_crew_problems():
        draft = run_tests_in_sandbox(problem["draft"], problem["tests"])
        models = scripted_crew(problem)
        result = code_review_crew(problem, models["writer"], models["test_writer"], models["reviewer"])
        score = lambda r: f"{len(r['passed'])}/{len(r['passed']) + len(r['failed'])}" if r["error"] is None else "error"  # noqa: E731
        print(f"  {problem['name']:<16}{score(draft):>29}{result.rounds:>14}{score(result.held_out):>16}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=3, help="tasks for the SmolLM2 comparison (0 skips it)")
    parser.add_argument("--max-turns", type=int, default=12, help="model calls per task, for each setup")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids oversubscription on a "
                        "shared machine; 0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    labkit.seed_everything(0)
    registry, tasks, counter = agents.default_tools(), agents.load_tasks(), gpt2_token_counter()

    bus, ledger = MessageBus(12), CostLedger(counter)
    demo = scripted_models(tasks[1])
    team = {role: Agent(role, demo[role], bus, ledger) for role in ("planner", "worker", "critic")}
    result = run_team(tasks[1]["question"], team["planner"], team["worker"], team["critic"], registry, bus)
    print(f"one scripted team run on {tasks[1]['question']!r}: {result.stop_reason} with {result.answer!r} "
          f"after {result.turns} turns, {result.revisions} revision(s)")
    for message in bus.log:
        print(f"  turn {message.turn:>2} {message.sender:>8} -> {message.recipient:<8} {message.kind:<8} "
              f"{json.dumps(message.content)[:70]}")

    print_comparison("scripted comparison (the worker answers too early on every other task; counts use GPT-2 BPE)",
                     compare(tasks, scripted_models, counter, registry, args.max_turns))
    framework_comparison(tasks, counter, registry, args.max_turns)
    voting_demo(tasks[1], registry)
    crew_demo()
    if args.tasks <= 0:
        return
    model, tokenizer = assets.smollm2()
    vocab = agents.TokenVocab.from_tokenizer(tokenizer)
    planner_schema = {"type": "object", "properties": {"plan": {"type": "string", "minLength": 1, "maxLength": 80}}}
    critic_schema = {"type": "object", "properties": {"verdict": {"enum": ["accept", "revise"]},
                                                      "feedback": {"type": "string", "maxLength": 60}}}

    def real_models(task):
        worker = agents.ConstrainedLLM(model, tokenizer, registry)
        worker.vocab = vocab
        single = agents.ConstrainedLLM(model, tokenizer, registry)
        single.vocab = vocab
        return {"single": single, "worker": worker, "planner": ConstrainedRole(model, tokenizer, vocab, planner_schema),
                "critic": ConstrainedRole(model, tokenizer, vocab, critic_schema)}

    t = time.perf_counter()
    real = compare(tasks[: args.tasks], real_models, lambda text: len(tokenizer.encode(text)), registry,
                   args.max_turns, progress=True)
    print_comparison(f"SmolLM2-135M for every role ({args.tasks} tasks, {time.perf_counter() - t:.0f} s; "
                     "counts use SmolLM2's tokenizer)", real)


if __name__ == "__main__":
    labkit.run(main)
