"""Lab 04, the production formats: a fetch_url tool against a loopback HTTP server these tests start (allow-list,
redirects, charsets, size cap, timeouts, errors), tools and tool calls in OpenAI's Chat Completions format
(validated by the openai package's own types, and driven through the real openai client against a loopback
stub of the API), and conversation memory under a token budget."""
import http.server
import json
import threading
import time

import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

HTML = ("<html><head><title>Harbour</title><style>.x {color: red}</style><script>var secret = 'hidden';</script>"
        "</head><body><h1>Notices</h1><p>Berth fee:   38 crowns\n per day.</p></body></html>").encode()
STREAMED = {"bytes": 0}
STREAM_TOTAL = 64 << 20  # the endless page offers 64 MiB


class Pages(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def _send(self, code, kind, body, extra=()):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        for key, value in extra:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        port = self.server.server_address[1]
        if self.path == "/page.html":
            self._send(200, "text/html; charset=utf-8", HTML)
        elif self.path == "/latin1.txt":
            self._send(200, "text/plain; charset=iso-8859-1", "Café crème à 4 €uros".encode("cp1252"))
        elif self.path == "/data.json":
            self._send(200, "application/json", b'{"berths": 12}')
        elif self.path == "/picture.png":
            self._send(200, "image/png", b"\x89PNG\r\n\x1a\n" + bytes(64))
        elif self.path == "/long.txt":
            self._send(200, "text/plain", b"word " * 2000)
        elif self.path == "/redirect-inside":
            self._send(302, "text/plain", b"", [("Location", f"http://127.0.0.1:{port}/page.html")])
        elif self.path == "/redirect-away":
            self._send(302, "text/plain", b"", [("Location", "http://169.254.169.254/latest/meta-data/")])
        elif self.path == "/slow":
            time.sleep(3)
            self._send(200, "text/plain", b"too late")
        elif self.path == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            chunk = b"x" * 65536
            try:
                while STREAMED["bytes"] < STREAM_TOTAL:
                    self.wfile.write(chunk)
                    STREAMED["bytes"] += len(chunk)
            except OSError:
                pass  # the client hung up: what a capped reader does
        else:
            self.send_error(404, "no such page")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------- fetch-url

@pytest.mark.task("fetch-url")
def test_check_url_allows_loopback_with_ports_and_any_case(impl, site):
    for url in [f"{site}/page.html", "http://LOCALHOST:8080/a", "https://localhost/", "http://[::1]:9/x"]:
        assert impl.check_url(url) == url, f"{url} is on the allow-list (host only: ports and case do not matter)"


@pytest.mark.task("fetch-url")
@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://localhost/", "127.0.0.1/page",
                                 "http://example.com/", "http://127.0.0.1.evil.example/",
                                 "http://localhost.evil.example:80/", "http://evil.example/?next=127.0.0.1",
                                 "http://127.0.0.1@evil.example/", "http://169.254.169.254/latest/meta-data/"])
def test_check_url_refuses_other_schemes_and_hosts(impl, url):
    with pytest.raises(impl.FetchError):
        impl.check_url(url)


@pytest.mark.task("fetch-url")
def test_check_url_uses_the_given_allow_list(impl):
    assert impl.check_url("https://docs.example.org/a", allowed_hosts={"docs.example.org"})
    with pytest.raises(impl.FetchError, match="allow-list"):
        impl.check_url("http://127.0.0.1/", allowed_hosts={"docs.example.org"})


@pytest.mark.task("fetch-url")
def test_fetch_returns_visible_text_of_html(impl, site):
    text = impl.fetch_url(f"{site}/page.html")
    assert text == "Harbour Notices Berth fee: 38 crowns per day.", f"got {text!r}"


@pytest.mark.task("fetch-url")
def test_fetch_decodes_with_the_declared_charset_and_keeps_json(impl, site):
    assert impl.fetch_url(f"{site}/latin1.txt") == "Café crème à 4 €uros".encode("cp1252").decode("iso-8859-1")
    assert json.loads(impl.fetch_url(f"{site}/data.json")) == {"berths": 12}


@pytest.mark.task("fetch-url")
def test_fetch_truncates_long_pages_and_marks_it(impl, site):
    text = impl.fetch_url(f"{site}/long.txt", max_chars=100)
    assert text.startswith("word word") and text.endswith("[truncated]") and len(text) < 130, text[-40:]
    whole = impl.fetch_url(f"{site}/long.txt", max_chars=20_000)
    assert whole == "word " * 2000, "a page within max_chars comes back whole, unmarked"
    capped = impl.fetch_url(f"{site}/long.txt", max_chars=20_000, max_bytes=500)
    assert capped.endswith("[truncated]") and capped.startswith("word " * 100), \
        "a body cut at max_bytes is truncated even when the cut text is shorter than max_chars"


@pytest.mark.task("fetch-url")
def test_fetch_reads_at_most_max_bytes_of_an_endless_page(impl, site):
    STREAMED["bytes"] = 0
    text = impl.fetch_url(f"{site}/endless", max_bytes=10_000, max_chars=50)
    assert text.endswith("[truncated]")
    time.sleep(0.3)  # let the server notice the closed connection
    assert STREAMED["bytes"] < 24 << 20, \
        f"the server sent {STREAMED['bytes'] >> 20} MiB: read at most max_bytes + 1 bytes, never the whole response"


@pytest.mark.task("fetch-url")
def test_fetch_follows_redirects_only_within_the_allow_list(impl, site):
    assert "38 crowns" in impl.fetch_url(f"{site}/redirect-inside")
    with pytest.raises(impl.FetchError, match="allow-list"):
        impl.fetch_url(f"{site}/redirect-away")


@pytest.mark.task("fetch-url")
def test_fetch_errors_are_fetch_errors_with_a_reason(impl, site):
    with pytest.raises(impl.FetchError, match="404"):
        impl.fetch_url(f"{site}/nothing-here")
    with pytest.raises(impl.FetchError, match="not text"):
        impl.fetch_url(f"{site}/picture.png")
    start = time.perf_counter()
    with pytest.raises(impl.FetchError):
        impl.fetch_url(f"{site}/slow", timeout=0.5)
    assert time.perf_counter() - start < 2.5, "the timeout must bound the wait"
    port = site.rsplit(":", 1)[1]
    closed = f"http://127.0.0.1:{int(port) + 1 if int(port) < 65535 else 1}/"
    with pytest.raises(impl.FetchError):
        impl.fetch_url(closed, timeout=1)


@pytest.mark.task("fetch-url")
def test_fetch_url_as_a_tool_reports_errors_as_observations(impl, site):
    registry = impl.ToolRegistry([impl.fetch_tool()])
    assert "38 crowns" in registry.call("fetch_url", {"url": f"{site}/page.html"})
    observation = registry.call("fetch_url", {"url": "http://example.com/"})
    assert observation.startswith("error:") and "allow-list" in observation


# ---------------------------------------------------------------- openai-tools

TOOL = pydantic.TypeAdapter(ChatCompletionToolParam)
MESSAGE = pydantic.TypeAdapter(ChatCompletionMessageParam)


def call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


@pytest.mark.task("openai-tools")
def test_openai_tools_are_valid_chat_completions_tools(impl):
    registry = impl.default_tools()
    tools = impl.openai_tools(registry)
    assert [t["function"]["name"] for t in tools] == list(registry.tools), "one tool per registry entry, in order"
    for tool, source in zip(tools, registry.tools.values()):
        TOOL.validate_python(tool)  # the openai package's own definition of a tool
        assert tool["type"] == "function"
        assert tool["function"]["parameters"] == source.parameters
        assert tool["function"]["description"] == source.description


@pytest.mark.task("openai-tools")
def test_execute_tool_calls_answers_each_call_in_order_with_its_id(impl):
    registry = impl.default_tools()
    message = {"role": "assistant", "content": None, "tool_calls": [
        call("call_b", "calculator", '{"expression": "6 * 7"}'),
        call("call_a", "calculator", json.dumps({"expression": "10 / 4"}))]}
    MESSAGE.validate_python(message)
    results = impl.execute_tool_calls(registry, message)
    assert [r["tool_call_id"] for r in results] == ["call_b", "call_a"], "one result per call, in the calls' order"
    assert [r["content"] for r in results] == ["42", "2.5"]
    for result in results:
        MESSAGE.validate_python(result)
        assert result["role"] == "tool"


@pytest.mark.task("openai-tools")
def test_execute_tool_calls_turns_bad_arguments_into_observations(impl):
    registry = impl.default_tools()
    message = {"role": "assistant", "content": None, "tool_calls": [
        call("c1", "calculator", '{"expression": "1 +'),          # broken JSON
        call("c2", "calculator", '["2 + 2"]'),                    # JSON, but not an object
        call("c3", "calculator", '{"expr": "2 + 2"}'),            # schema violation
        call("c4", "no_such_tool", "{}"),
        call("c5", "calculator", '{"expression": "2 + 2"}')]}
    results = impl.execute_tool_calls(registry, message)
    assert [r["tool_call_id"] for r in results] == ["c1", "c2", "c3", "c4", "c5"]
    assert all(r["content"].startswith("error:") for r in results[:4]), [r["content"] for r in results]
    assert "JSON" in results[0]["content"] and "object" in results[1]["content"]
    assert results[4]["content"] == "4", "a bad call must not stop the others"
    assert impl.execute_tool_calls(registry, {"role": "assistant", "content": "done"}) == []


# ---------------------------------------------------------------- memory

def words(text):
    return len(text.split())


def conversation():
    """system (3 words), then: user 4, assistant+2 calls 4 (+ names/arguments), tool 1, tool 1, assistant 5, user 3."""
    return [
        {"role": "system", "content": "you are helpful"},
        {"role": "user", "content": "what is the fee"},
        {"role": "assistant", "content": "let me compute that", "tool_calls": [
            call("t1", "calculator", '{"expression": "38*12"}'), call("t2", "calculator", '{"expression": "1"}')]},
        {"role": "tool", "tool_call_id": "t1", "content": "456"},
        {"role": "tool", "tool_call_id": "t2", "content": "1"},
        {"role": "assistant", "content": "the fee is 456 crowns"},
        {"role": "user", "content": "and for two"},
    ]


def tool_unit_cost():
    # words of the content + words of each call's name and arguments (as the lab's docstring defines the cost)
    return 4 + words('calculator{"expression": "38*12"}') + words('calculator{"expression": "1"}') + 1 + 1


@pytest.mark.task("memory")
def test_trim_keeps_everything_that_fits(impl):
    messages = conversation()
    total = 3 + 4 + tool_unit_cost() + 5 + 3
    assert impl.trim_messages(messages, total, words) == messages
    assert messages == conversation(), "trim_messages must not modify its input"


@pytest.mark.task("memory")
def test_trim_drops_oldest_first_and_keeps_the_system_message(impl):
    messages = conversation()
    window = impl.trim_messages(messages, 3 + 5 + 3, words)  # exactly the system message and the last two
    assert window == [messages[0], messages[5], messages[6]], [m["role"] for m in window]
    window = impl.trim_messages(messages, 3 + 5 + 3 - 1, words)  # one token less: the assistant reply goes too
    assert window == [messages[0], messages[6]]


@pytest.mark.task("memory")
def test_trim_keeps_tool_calls_and_their_results_together(impl):
    messages = conversation()
    budget = 3 + tool_unit_cost() + 5 + 3
    assert impl.trim_messages(messages, budget, words) == [messages[0]] + messages[2:]
    for cut in range(1, tool_unit_cost()):  # any budget that cannot hold the whole tool unit drops all of it
        window = impl.trim_messages(messages, budget - cut, words)
        assert window == [messages[0], messages[5], messages[6]], \
            f"budget {budget - cut}: got roles {[m['role'] for m in window]}; a tool message without its call is invalid"


@pytest.mark.task("memory")
def test_trim_never_leaves_a_gap(impl):
    messages = [{"role": "system", "content": "s"},
                {"role": "user", "content": "old"},                      # 1 word: would fit...
                {"role": "assistant", "content": "a " * 50},             # ...but this one does not
                {"role": "user", "content": "newest question"}]
    assert impl.trim_messages(messages, 1 + 2 + 1, words) == [messages[0], messages[3]], \
        "memory is the newest contiguous stretch; skipping a message that does not fit leaves a hole"


@pytest.mark.task("memory")
def test_trim_without_system_message_and_with_too_small_a_budget(impl):
    messages = conversation()[1:]
    assert impl.trim_messages(messages, 3, words) == [messages[-1]]
    with pytest.raises(ValueError, match="max_tokens"):
        impl.trim_messages(conversation(), 3 + 2, words)


# ---------------------------------------------------------------- openai-loop: the real client against a stub API

class StubAPI(http.server.BaseHTTPRequestHandler):
    """Answers POST /v1/chat/completions with the next scripted assistant message and records each request body."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        message = self.server.script[len(self.server.requests) - 1]
        reply = json.dumps({"id": f"chatcmpl-{len(self.server.requests)}", "object": "chat.completion",
                            "created": 0, "model": body["model"],
                            "choices": [{"index": 0, "message": message,
                                         "finish_reason": "tool_calls" if message.get("tool_calls") else "stop"}]})
        data = reply.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_api():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StubAPI)
    server.requests, server.script = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.task("openai-loop")
def test_agent_loop_through_the_openai_client(impl, stub_api):
    stub_api.script = [
        {"role": "assistant", "content": "First the fee, then the extra.",  # text next to tool calls: not an answer
         "tool_calls": [call("call_x", "calculator", '{"expression": "38 * 12"}'),
                                                               call("call_y", "calculator", '{"expression": "2 ** 3"}')]},
        {"role": "assistant", "content": None, "tool_calls": [call("call_z", "calculator", '{"expression": "456 + 8"}')]},
        {"role": "assistant", "content": "464 crowns"}]
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{stub_api.server_address[1]}/v1", api_key="local",
                           max_retries=0, timeout=10)
    registry = impl.default_tools()
    result = impl.run_agent_openai(impl.openai_chat(client, "stub-model"), registry, "fee for 12 days plus 8?")
    assert (result.answer, result.steps, result.stop_reason) == ("464 crowns", 3, "final_answer")
    requests = stub_api.requests
    assert len(requests) == 3
    for body in requests:
        assert body["model"] == "stub-model"
        for tool in body["tools"]:
            TOOL.validate_python(tool)
        for message in body["messages"]:
            MESSAGE.validate_python(message)
    second = requests[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool", "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in second[3:]] == [("call_x", "456"), ("call_y", "8")]
    third = requests[2]["messages"]
    assert [m["role"] for m in third] == ["system", "user", "assistant", "tool", "tool", "assistant", "tool"]
    assert (third[-1]["tool_call_id"], third[-1]["content"]) == ("call_z", "464")
    assert result.messages[-1] == {"role": "assistant", "content": "464 crowns"}


@pytest.mark.task("openai-loop")
def test_agent_loop_stops_at_the_step_cap(impl):
    registry = impl.default_tools()
    chat = impl.ScriptedChat([{"tool": "calculator", "args": {"expression": f"{i} + 1"}} for i in range(5)])
    result = impl.run_agent_openai(chat, registry, "count", max_steps=3)
    assert (result.answer, result.steps, result.stop_reason) == (None, 3, "max_steps")
    assert chat.calls == 3, "exactly max_steps model calls"
    assert [m["content"] for m in result.messages if m["role"] == "tool"] == ["1", "2", "3"]
    with pytest.raises(ValueError):
        impl.run_agent_openai(chat, registry, "count", max_steps=0)


@pytest.mark.task("openai-loop")
def test_agent_loop_shows_the_model_a_trimmed_window(impl):
    seen = []

    def chat(messages, tools):
        seen.append([m["role"] for m in messages])
        return ({"role": "assistant", "content": None, "tool_calls": [call(f"c{len(seen)}", "calculator",
                                                                            '{"expression": "1"}')]}
                if len(seen) < 4 else {"role": "assistant", "content": "done"})

    result = impl.run_agent_openai(chat, impl.default_tools(), "q", max_context_tokens=25, count_tokens=words)
    assert result.answer == "done" and len(result.messages) == 2 + 3 * 2 + 1, "the full history is still returned"
    system_words = words(impl.OPENAI_SYSTEM)
    assert seen[0] == ["system", "user"] and system_words + 1 <= 25
    unit = words('calculator{"expression": "1"}') + 1  # one call + its result
    fit = (25 - system_words) // unit
    assert seen[3][0] == "system" and seen[3].count("tool") == min(3, fit), (seen[3], fit)
    assert all(roles[1] in ("user", "assistant") for roles in seen), "a window never starts with a tool message"
