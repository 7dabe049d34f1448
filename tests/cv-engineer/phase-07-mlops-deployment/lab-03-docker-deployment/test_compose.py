"""The compose rules, on a compose file written here (read with PyYAML) and on the shipped one."""
import copy

import pytest
import yaml

GOOD = yaml.safe_load("""
services:
  server:
    build: {context: ., dockerfile: Dockerfile}
    ports: ["127.0.0.1:8000:8000"]
    read_only: true
    healthcheck: {test: ["CMD", "true"], interval: 10s}
  prometheus:
    image: prom/prometheus:v3.5.0
    ports: [{target: 9090, published: 9090, host_ip: 127.0.0.1}]
    read_only: true
    depends_on: {server: {condition: service_healthy}}
""")


def changed(path, value):
    """GOOD with services.<path> set to value (None deletes it)."""
    doc = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = doc["services"]
    for key in parents:
        node = node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return doc


BAD = {
    "services": [changed("server.build", None), changed("prometheus.image", None)],
    "healthcheck": [changed("server.healthcheck", None), changed("server.healthcheck.disable", True)],
    "loopback-ports": [changed("server.ports", ["8000:8000"]), changed("server.ports", ["0.0.0.0:8000:8000"]),
                       changed("prometheus.ports", [{"target": 9090, "published": 9090}])],
    "depends-healthy": [changed("prometheus.depends_on", ["server"]),
                        changed("prometheus.depends_on", {"server": {"condition": "service_started"}})],
    "read-only": [changed("prometheus.read_only", None), changed("server.read_only", False)],
    "not-privileged": [changed("server.privileged", True), changed("prometheus.cap_add", ["SYS_ADMIN"])],
}
CASES = [(rule, i, doc) for rule, docs in BAD.items() for i, doc in enumerate(docs)]


@pytest.mark.task("check-compose")
def test_the_good_compose_breaks_no_rule(impl):
    assert impl.check_compose(GOOD) == []


@pytest.mark.task("check-compose")
@pytest.mark.parametrize("rule, case, doc", CASES, ids=[f"{r}-{i}" for r, i, _ in CASES])
def test_each_bad_compose_breaks_exactly_its_rule(impl, rule, case, doc):
    got = impl.check_compose(doc)
    assert got == [rule], f"case {case} of {rule!r} ({impl.COMPOSE_RULES[rule]}): want [{rule!r}], got {got}"


@pytest.mark.task("check-compose")
def test_the_shipped_compose_breaks_no_rule(impl):
    assert impl.check_compose(yaml.safe_load(impl.COMPOSE.read_text())) == []
