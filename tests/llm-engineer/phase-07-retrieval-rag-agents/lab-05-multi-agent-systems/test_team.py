"""Lab 05 checks: the bus, the blackboard and the ledger on hand examples (token counts against tiktoken), the
grounded critic's rule, and scripted team runs: the hand-over order, revision after a premature answer, the
turn limit, and the single-versus-team comparison on lab 04's tasks."""
import json

import pytest
import tiktoken

from labkit import assets


@pytest.fixture(scope="module")
def agents(impl):
    return impl.agents  # lab 04's reference solution, loaded by the lab itself


@pytest.mark.task("message-bus")
def test_bus_delivers_in_order_and_counts_turns(impl):
    bus = impl.MessageBus(max_turns=2)
    bus.publish("planner", "worker", "plan", ["a"])
    bus.take_turn("worker")
    bus.publish("critic", "worker", "verdict", {"verdict": "accept"})
    bus.publish("worker", "critic", "answer", "42")
    got = bus.receive("worker")
    assert [(m.sender, m.kind, m.turn) for m in got] == [("planner", "plan", 0), ("critic", "verdict", 1)], \
        f"expected the worker's two messages oldest first, stamped with turns 0 and 1, got {got}"
    assert bus.receive("worker") == [], "receive must empty the inbox"
    assert [m.kind for m in bus.log] == ["plan", "verdict", "answer"], "the log keeps every message in order"
    assert bus.take_turn("critic") == 2, "the second call is turn 2"
    with pytest.raises(impl.TurnLimitReached):
        bus.take_turn("planner")
    with pytest.raises(ValueError):
        impl.MessageBus(max_turns=0)


@pytest.mark.task("blackboard")
def test_blackboard_versions_and_history(impl):
    board = impl.Blackboard()
    board.write("plan", ["x"], "planner")
    board.write("answer", "1", "worker")
    second = board.write("answer", "2", "worker")
    assert second.version == 2 and board.read("answer") == "2", f"expected version 2 holding '2', got {second}"
    assert board.snapshot() == {"plan": ["x"], "answer": "2"}, f"snapshot should show current values, got {board.snapshot()}"
    assert [(e.key, e.version, e.author) for e in board.history] == \
        [("plan", 1, "planner"), ("answer", 1, "worker"), ("answer", 2, "worker")], "history keeps every write"
    assert board.read("missing", "none") == "none"
    board.write("plan", ["y"], "planner")
    assert list(board.snapshot()) == ["plan", "answer"], \
        f"snapshot keys come in first-written order (a rewrite keeps its place), got {list(board.snapshot())}"


@pytest.mark.task("cost-ledger")
def test_ledger_counts_gpt2_tokens_per_agent(impl):
    encoding = assets.tiktoken_encoding("gpt2")
    ledger = impl.CostLedger(lambda text: len(encoding.encode(text)))
    ledger.record("planner", "Plan the task: add 2 and 2.", "step one; step two")
    ledger.record("planner", "Again.", "ok")
    ledger.record("critic", "Review: 4", '{"verdict": "accept"}')
    want_in = len(encoding.encode("Plan the task: add 2 and 2.")) + len(encoding.encode("Again."))
    want_out = len(encoding.encode("step one; step two")) + len(encoding.encode("ok"))
    row = ledger.per_agent["planner"]
    assert row == {"calls": 2, "tokens_in": want_in, "tokens_out": want_out}, \
        f"expected planner {{calls 2, in {want_in}, out {want_out}}}, got {row}"
    total = ledger.total()
    assert total["calls"] == 3 and total["tokens_out"] == want_out + len(encoding.encode('{"verdict": "accept"}')), \
        f"totals should sum the agents, got {total}"


@pytest.mark.task("grounded-critic")
def test_grounded_critic_rule(impl):
    board = {"plan": ["x"], 'search_docs({"query": "q"})': "184,000 people in 12 districts"}
    assert impl.grounded_verdict("184000", board)["verdict"] == "revise", "no computation on the board: revise"
    board['calculator({"expression": "184000 / 12"})'] = "15333.333333333334"
    assert impl.grounded_verdict("About 15,333.33 people", board)["verdict"] == "accept", "matches the computation"
    assert impl.grounded_verdict("15000", board)["verdict"] == "revise", "a different number: revise"
    assert impl.grounded_verdict(None, board)["verdict"] == "revise", "no answer: revise"
    board['python({"code": "print(7)"})'] = "7"
    assert impl.grounded_verdict("15333.33", board)["verdict"] == "revise", "only the latest computation counts"


def team(impl, models, max_turns=12):
    bus = impl.MessageBus(max_turns)
    ledger = impl.CostLedger(lambda text: len(text.split()))
    return bus, ledger, {role: impl.Agent(role, models[role], bus, ledger) for role in ("planner", "worker", "critic")}


@pytest.mark.task("orchestrator")
def test_team_revises_a_premature_answer(impl, agents):
    task = agents.load_tasks()[0]  # Velmora: 184,000 people over 12 districts
    models = {"planner": agents.ScriptedModel([{"plan": "find the facts; divide"}]),
              "worker": agents.ScriptedModel(impl.hasty_worker_script(task, hasty=True)),
              "critic": impl.GroundedCritic()}
    bus, ledger, roles = team(impl, models)
    result = impl.run_team(task["question"], roles["planner"], roles["worker"], roles["critic"],
                           agents.default_tools(), bus)
    assert result.stop_reason == "accepted" and agents.solved(result.answer, task), \
        f"expected an accepted, correct answer after one revision, got {result.stop_reason} {result.answer!r}"
    assert result.revisions == 1, f"expected exactly one revision, got {result.revisions}"
    kinds = [(m.sender, m.kind) for m in bus.log]
    assert kinds == [("user", "task"), ("planner", "plan"), ("worker", "answer"), ("critic", "verdict"),
                     ("worker", "answer"), ("critic", "verdict")], f"unexpected hand-over order {kinds}"
    assert result.board.read("plan") == ["find the facts", "divide"], f"the plan goes on the board, got {result.board.read('plan')}"
    assert [e.version for e in result.board.history if e.key == "answer"] == [1, 2], "two versions of the answer"
    assert ledger.per_agent["critic"]["calls"] == 2 and ledger.per_agent["planner"]["calls"] == 1


class Recorder:
    """Wraps a model and keeps the question of every fresh ReAct run (a call that sees only system + user)."""

    def __init__(self, model):
        self.model, self.questions = model, []

    def __call__(self, messages):
        if len(messages) == 2:
            self.questions.append(messages[1]["content"])
        return self.model(messages)


@pytest.mark.task("orchestrator")
def test_revision_round_sees_feedback_and_known_results(impl, agents):
    task = agents.load_tasks()[0]
    script = impl.hasty_worker_script(task, hasty=True)
    worker = Recorder(agents.ScriptedModel(script))
    critic = agents.ScriptedModel([{"verdict": "revise", "feedback": "show the division you used"},
                                   {"verdict": "accept", "feedback": "fine"}])
    bus, _, roles = team(impl, {"planner": agents.ScriptedModel([{"plan": "find; divide"}]), "worker": worker,
                                "critic": critic})
    impl.run_team(task["question"], roles["planner"], roles["worker"], roles["critic"], agents.default_tools(), bus)
    assert len(worker.questions) == 2, f"expected two worker rounds, got {len(worker.questions)}"
    second = worker.questions[1]
    assert "show the division you used" in second, f"round 2 should carry the critic's feedback, got {second!r}"
    first_call = script[0]
    found = agents.default_tools().call(first_call["tool"], first_call["args"])
    assert json.dumps(found)[1:-1] in second, \
        f"round 2 should list the results already on the blackboard (the first search), got {second!r}"


@pytest.mark.task("orchestrator")
def test_rounds_are_one_plus_max_revisions_and_need_an_answer(impl, agents):
    task = agents.load_tasks()[0]
    wrong = agents.ScriptedModel([{"thought": "guess", "final_answer": "1"}] * 5)
    critic = agents.ScriptedModel([{"verdict": "revise", "feedback": "no"}] * 5)
    bus, ledger, roles = team(impl, {"planner": agents.ScriptedModel([{"plan": "x"}]), "worker": wrong,
                                     "critic": critic}, max_turns=30)
    result = impl.run_team(task["question"], roles["planner"], roles["worker"], roles["critic"],
                           agents.default_tools(), bus, max_revisions=2)
    assert (result.stop_reason, result.revisions, ledger.per_agent["critic"]["calls"]) == \
        ("revisions_exhausted", 2, 3), \
        f"max_revisions=2 means 3 rounds; got {result.stop_reason}, {result.revisions} revisions, " \
        f"{ledger.per_agent['critic']['calls']} critic calls"
    # a worker that never answers cannot be accepted, whatever the critic says
    looping = [{"thought": "t", "tool": "calculator", "args": {"expression": f"{i} + 1"}} for i in range(20)]
    yes_man = agents.ScriptedModel([{"verdict": "accept", "feedback": "ok"}] * 5)
    bus, _, roles = team(impl, {"planner": agents.ScriptedModel([{"plan": "x"}]),
                                "worker": agents.ScriptedModel(looping), "critic": yes_man}, max_turns=30)
    result = impl.run_team(task["question"], roles["planner"], roles["worker"], roles["critic"],
                           agents.default_tools(), bus, max_revisions=1, worker_steps=2)
    assert (result.stop_reason, result.answer) == ("revisions_exhausted", None), \
        f"no answer was ever given, so nothing can be accepted; got {result.stop_reason} {result.answer!r}"


@pytest.mark.task("orchestrator")
def test_team_stops_at_the_turn_limit(impl, agents):
    task = agents.load_tasks()[0]
    looping = [{"thought": "again", "tool": "calculator", "args": {"expression": f"{i} + 1"}} for i in range(30)]
    models = {"planner": agents.ScriptedModel([{"plan": "loop"}]), "worker": agents.ScriptedModel(looping),
              "critic": impl.GroundedCritic()}
    bus, _, roles = team(impl, models, max_turns=5)
    result = impl.run_team(task["question"], roles["planner"], roles["worker"], roles["critic"],
                           agents.default_tools(), bus, worker_steps=10)
    assert result.stop_reason == "turn_limit" and bus.turns == 5, \
        f"expected the run to end at the 5-turn limit, got {result.stop_reason} after {bus.turns} turns"


@pytest.mark.task("orchestrator")
def test_scripted_comparison_team_beats_hasty_single_agent(impl, agents):
    tasks = agents.load_tasks()
    result = impl.compare(tasks, impl.scripted_models, lambda text: len(text.split()), agents.default_tools())
    hasty = sum(int(t["id"].lstrip("t")) % 2 == 0 for t in tasks)
    assert result["single"]["solved"] == len(tasks) - hasty, \
        f"the single agent keeps its premature answers: expected {len(tasks) - hasty} solved, got {result['single']['solved']}"
    assert result["team"]["solved"] == len(tasks), f"the critic should rescue every task, got {result['team']['solved']}"
    assert result["team"]["tokens_in"] > result["single"]["tokens_in"], "the team must cost more tokens"
