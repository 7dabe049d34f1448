"""Sliding window, two pointers, binary search, heaps, graphs and dynamic programming: hand-worked cases first,
then hypothesis against brute force (every subarray, every threshold, every subsequence), sorted(), networkx."""
import copy
import itertools
import math

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None)
small_ints = st.lists(st.integers(-6, 6), min_size=1, max_size=14)


# ------------------------------------------------------------------ sliding window

@pytest.mark.task("sliding-window")
def test_kadane_by_hand(impl):
    assert impl.max_subarray([-2, 1, -3, 4, -1, 2, 1, -5, 4]) == 6, "the run 4, -1, 2, 1 sums to 6"
    assert impl.max_subarray([-3, -1, -2]) == -1, "all negative: the best non-empty run is the largest element"
    assert impl.max_subarray([5]) == 5
    assert impl.max_subarray([2, -1, 2]) == 3, "a dip worth crossing: 2 - 1 + 2"


@pytest.mark.task("sliding-window")
def test_kadane_equals_brute_force(impl):
    impl.max_subarray([1])

    @FAST
    @given(small_ints)
    def check(arr):
        best = max(sum(arr[i:j]) for i in range(len(arr)) for j in range(i + 1, len(arr) + 1))
        assert impl.max_subarray(arr) == best, f"{arr}: best run sums to {best}, got {impl.max_subarray(arr)}"
    check()


@pytest.mark.task("sliding-window")
def test_window_max_by_hand(impl):
    got = impl.sliding_window_max([1, 3, -1, -3, 5, 3, 6, 7], 3)
    assert got == [3, 3, 5, 5, 6, 7], f"expected [3, 3, 5, 5, 6, 7], got {got}"
    assert impl.sliding_window_max([4, 2, 12, 3], 1) == [4, 2, 12, 3], "k=1: every element is its own window"
    assert impl.sliding_window_max([4, 2, 12, 3], 4) == [12], "k=len: one window"
    assert impl.sliding_window_max([4, 2], 3) == [], "k > len: no full window"
    assert impl.sliding_window_max([9, 1, 1, 1, 1], 2) == [9, 1, 1, 1], "the 9 must leave after its window"


@pytest.mark.task("sliding-window")
def test_window_max_equals_brute_force(impl):
    impl.sliding_window_max([1, 2], 1)

    @FAST
    @given(small_ints, st.integers(1, 6))
    def check(nums, k):
        expected = [max(nums[i:i + k]) for i in range(len(nums) - k + 1)]
        assert impl.sliding_window_max(nums, k) == expected, f"{nums}, k={k}: expected {expected}"
    check()


# ------------------------------------------------------------------ two pointers

@pytest.mark.task("two-pointers")
def test_remove_duplicates_by_hand(impl):
    nums = [1, 1, 2, 3, 3]
    n = impl.remove_duplicates(nums)
    assert n == 3 and nums[:3] == [1, 2, 3], f"expected 3 and prefix [1, 2, 3], got {n} and {nums[:n]}"
    assert impl.remove_duplicates([]) == 0, "an empty list has 0 unique values"
    one = [7]
    assert impl.remove_duplicates(one) == 1 and one == [7]
    same = [2, 2, 2, 2]
    assert impl.remove_duplicates(same) == 1 and same[0] == 2


@pytest.mark.task("two-pointers")
def test_remove_duplicates_in_place_on_any_sorted_list(impl):
    impl.remove_duplicates([1])

    @FAST
    @given(small_ints.map(sorted))
    def check(nums):
        original, alias = list(nums), nums
        n = impl.remove_duplicates(nums)
        expected = sorted(set(original))
        assert nums is alias and len(nums) == len(original), "work in place: same list, same length"
        assert n == len(expected) and nums[:n] == expected, f"{original}: expected {expected}, got {nums[:n]}"
    check()


def merge_by_repeated_fusion(intervals):
    """Reference: fuse any two overlapping (or touching) intervals until none are left; O(N^3) but obvious."""
    items = [list(iv) for iv in intervals]
    fused = True
    while fused:
        fused = False
        for a, b in itertools.combinations(range(len(items)), 2):
            (s1, e1), (s2, e2) = items[a], items[b]
            if s1 <= e2 and s2 <= e1:
                items[a] = [min(s1, s2), max(e1, e2)]
                del items[b]
                fused = True
                break
    return sorted(items)


@pytest.mark.task("two-pointers")
def test_merge_intervals_by_hand(impl):
    got = impl.merge_intervals([[1, 3], [2, 6], [8, 10], [15, 18]])
    assert got == [[1, 6], [8, 10], [15, 18]], f"expected [[1, 6], [8, 10], [15, 18]], got {got}"
    assert impl.merge_intervals([[3, 5], [1, 3]]) == [[1, 5]], "touching intervals merge, whatever the input order"
    assert impl.merge_intervals([[1, 10], [2, 3], [4, 5]]) == [[1, 10]], "contained intervals vanish"
    assert impl.merge_intervals([[1, 2], [3, 4]]) == [[1, 2], [3, 4]], "a gap keeps them apart"
    assert impl.merge_intervals([]) == [], "no intervals, nothing merged"


@pytest.mark.task("two-pointers")
def test_merge_intervals_leaves_the_input_alone(impl):
    given_in = [[8, 10], [1, 3], [2, 6]]
    before = copy.deepcopy(given_in)
    out = impl.merge_intervals(given_in)
    assert given_in == before, f"the caller's list changed: {before} became {given_in}"
    assert all(o is not g for o in out for g in given_in), "return new [start, end] lists, not the caller's"


@pytest.mark.task("two-pointers")
def test_merge_intervals_equals_repeated_fusion(impl):
    impl.merge_intervals([[1, 2]])
    interval = st.tuples(st.integers(0, 30), st.integers(0, 8)).map(lambda se: [se[0], se[0] + se[1]])

    @FAST
    @given(st.lists(interval, max_size=10))
    def check(intervals):
        expected = merge_by_repeated_fusion(intervals)
        assert impl.merge_intervals(intervals) == expected, f"{intervals}: expected {expected}"
    check()


# ------------------------------------------------------------------ binary search and its limits

def threshold_by_brute_force(scores, labels, target):
    """Try every distinct score as the threshold; the smallest one that reaches the target precision."""
    good = []
    for t in set(scores):
        predicted = [y for s, y in zip(scores, labels) if s >= t]
        if sum(predicted) / len(predicted) >= target:
            good.append(t)
    return min(good) if good else math.inf


@pytest.mark.task("binary-search")
def test_find_threshold_when_precision_is_not_monotone(impl):
    # descending: 0.95 neg (p=0), 0.9 pos (1/2), 0.8 pos (2/3), 0.7 pos (3/4 exactly), 0.6 neg (3/5), 0.5 pos (4/6)
    scores = [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    labels = [0, 1, 1, 1, 0, 1, 0, 0]
    got = impl.find_threshold(scores, labels, 0.75)
    assert got == 0.7, f"precision reaches 0.75 exactly at t=0.7 (3 of 4), got {got}"
    got = impl.find_threshold(scores, labels, 0.6)
    assert got == 0.5, f"for 0.6 the lowest good threshold is 0.5 (4 of 6; 0.4 gives 4 of 7), got {got}"
    assert impl.find_threshold(scores, labels, 0.8) == math.inf, "no threshold reaches 0.8: math.inf"


@pytest.mark.task("binary-search")
def test_find_threshold_keeps_tied_scores_together(impl):
    # at t=0.6 both tied samples (one positive, one negative) are predicted: precision 2/3 < 0.8
    got = impl.find_threshold([0.9, 0.6, 0.6, 0.3], [1, 1, 0, 0], 0.8)
    assert got == 0.9, f"a threshold cannot split the two 0.6 scores; expected 0.9, got {got}"


@pytest.mark.task("binary-search")
def test_find_threshold_equals_brute_force(impl):
    impl.find_threshold([0.5], [1], 0.5)

    @FAST
    @given(st.lists(st.tuples(st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9]), st.booleans()), min_size=1,
                    max_size=12), st.sampled_from([0.3, 0.5, 2 / 3, 0.75, 0.9, 1.0]))
    def check(pairs, target):
        scores, labels = [s for s, _ in pairs], [int(y) for _, y in pairs]
        expected = threshold_by_brute_force(scores, labels, target)
        assert impl.find_threshold(scores, labels, target) == expected, f"{pairs}, target {target}: expected {expected}"
    check()


@pytest.mark.task("binary-search")
def test_max_feasible_batch_by_hand(impl):
    calls = []

    def latency(b):
        calls.append(b)
        return 2 + 0.5 * b
    got = impl.max_feasible_batch(latency, 20)
    assert got == 36, f"2 + 0.5 * 36 = 20 ms is exactly the budget: expected 36, got {got}"
    assert len(calls) <= 11, f"binary search over 1..512 needs about log2(512) = 9 probes, made {len(calls)}"
    assert impl.max_feasible_batch(lambda b: 100.0, 20) == 0, "even batch 1 is too slow: 0, not 1"
    assert impl.max_feasible_batch(lambda b: 1.0, 20) == 512, "everything fits: the largest batch, 512"
    assert impl.max_feasible_batch(lambda b: b, 700, max_batch=1000) == 700, "max_batch widens the range"


@pytest.mark.task("binary-search")
def test_max_feasible_batch_equals_a_scan(impl):
    impl.max_feasible_batch(lambda b: b, 3)

    @FAST
    @given(st.floats(0, 30), st.floats(0.01, 3), st.floats(0, 400))
    def check(fixed, per_item, budget):
        latency = lambda b: fixed + per_item * b  # noqa: E731
        expected = max([b for b in range(1, 513) if latency(b) <= budget], default=0)
        assert impl.max_feasible_batch(latency, budget) == expected, f"expected {expected}"
    check()


# ------------------------------------------------------------------ heaps and selection

@pytest.mark.task("heaps")
def test_topk_with_tied_scores_and_numpy_boxes(impl):
    boxes = [np.array([i, i, i + 5, i + 5]) for i in range(6)]
    dets = [(0.5, boxes[0]), (0.9, boxes[1]), (0.5, boxes[2]), (0.9, boxes[3]), (0.7, boxes[4]), (0.5, boxes[5])]
    got = impl.topk_detections(dets, 4)
    expected = [dets[1], dets[3], dets[4], dets[0]]  # ties keep input order
    position = {id(d): i for i, d in enumerate(dets)}
    assert [position.get(id(d)) for d in got] == [1, 3, 4, 0], \
        f"expected detections [1, 3, 4, 0] (the earlier of equal scores first), got {[position.get(id(d)) for d in got]}"
    assert impl.topk_detections(dets, 0) == [], "k=0 keeps nothing"
    assert [s for s, _ in impl.topk_detections(dets, 10)] == [0.9, 0.9, 0.7, 0.5, 0.5, 0.5], "k > N keeps all"


@pytest.mark.task("heaps")
def test_topk_equals_a_stable_sort(impl):
    impl.topk_detections([(1.0, np.zeros(4))], 1)

    @FAST
    @given(st.lists(st.sampled_from([0.1, 0.4, 0.4, 0.8, 0.95]), max_size=15), st.integers(0, 8))
    def check(scores, k):
        dets = [(s, np.full(4, i)) for i, s in enumerate(scores)]
        expected = sorted(dets, key=lambda d: -d[0])[:k]
        got = impl.topk_detections(dets, k)
        assert [id(d) for d in got] == [id(d) for d in expected], f"scores {scores}, k={k}"
    check()


@pytest.mark.task("heaps")
def test_kth_largest_by_hand(impl):
    got = impl.kth_largest([3, 2, 1, 5, 6, 4], 2)
    assert got == 5, f"2nd largest of [3, 2, 1, 5, 6, 4] is 5, got {got}"
    assert impl.kth_largest([3, 3, 1], 2) == 3, "duplicates count: [3, 3, 1] has 2nd largest 3"
    got = impl.kth_largest([3, 2, 3, 1, 2, 4, 5, 5, 6], 4)
    assert got == 4, f"4th largest of [3, 2, 3, 1, 2, 4, 5, 5, 6] is 4 (6, 5, 5, 4), got {got}"
    nums = [5, 1, 4, 2, 3]
    impl.kth_largest(nums, 3)
    assert nums == [5, 1, 4, 2, 3], "the caller's list must not be reordered"


@pytest.mark.task("heaps")
def test_kth_largest_equals_sorted(impl):
    impl.kth_largest([1], 1)

    @FAST
    @given(small_ints, st.data())
    def check(nums, data):
        k = data.draw(st.integers(1, len(nums)))
        expected = sorted(nums, reverse=True)[k - 1]
        assert impl.kth_largest(nums, k) == expected, f"{nums}, k={k}: expected {expected}"
    check()


# ------------------------------------------------------------------ graphs

def respects(order, n, edges):
    position = {node: i for i, node in enumerate(order)}
    return sorted(order) == list(range(n)) and all(position[u] < position[v] for u, v in edges)


@pytest.mark.task("graphs")
def test_topological_sort_by_hand(impl):
    edges = [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)]
    order = impl.topological_sort(5, edges)
    assert respects(order, 5, edges), f"{order} is not a topological order of {edges}"
    assert impl.topological_sort(3, [(0, 1), (1, 2), (2, 0)]) == [], "a cycle has no order: []"
    assert impl.topological_sort(2, [(1, 1)]) == [], "a self-loop is a cycle"
    assert sorted(impl.topological_sort(4, [(3, 1)])) == [0, 1, 2, 3], "nodes without edges still appear"
    assert respects(impl.topological_sort(3, [(2, 1), (1, 0)]), 3, [(2, 1), (1, 0)]), "the source need not be 0"


@pytest.mark.task("graphs")
def test_topological_sort_agrees_with_networkx(impl):
    impl.topological_sort(1, [])

    @FAST
    @given(st.integers(1, 8).flatmap(lambda n: st.tuples(st.just(n), st.lists(
        st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=12))))
    def check(graph):
        n, edges = graph
        g = nx.DiGraph(edges)
        g.add_nodes_from(range(n))
        order = impl.topological_sort(n, edges)
        if nx.is_directed_acyclic_graph(g):
            assert respects(order, n, edges), f"n={n}, edges={edges}: {order} breaks an edge or misses a node"
        else:
            assert order == [], f"n={n}, edges={edges} has a cycle: expected [], got {order}"
    check()


@pytest.mark.task("graphs")
def test_count_components_by_hand(impl):
    assert impl.count_components(5, [(0, 1), (1, 2), (3, 4)]) == 2
    assert impl.count_components(3, [(0, 1), (1, 2), (2, 0), (0, 1)]) == 1, "a triangle plus a repeat is one"
    assert impl.count_components(4, []) == 4, "no edges: every node alone"


@pytest.mark.task("graphs")
def test_count_components_agrees_with_networkx(impl):
    impl.count_components(1, [])

    @FAST
    @given(st.integers(1, 10).flatmap(lambda n: st.tuples(st.just(n), st.lists(
        st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=14))))
    def check(graph):
        n, edges = graph
        g = nx.Graph(edges)
        g.add_nodes_from(range(n))
        expected = nx.number_connected_components(g)
        assert impl.count_components(n, edges) == expected, f"n={n}, edges={edges}: expected {expected}"
    check()


# ------------------------------------------------------------------ dynamic programming

def lcs_by_brute_force(a, b):
    """Longest subsequence of a (tried longest first) that is also a subsequence of b."""
    def is_subsequence(sub, seq):
        it = iter(seq)
        return all(x in it for x in sub)
    for size in range(len(a), -1, -1):
        if any(is_subsequence(combo, b) for combo in itertools.combinations(a, size)):
            return size


@pytest.mark.task("dynamic-programming")
def test_lcs_by_hand(impl):
    assert impl.lcs(list("ABCBDAB"), list("BDCABA")) == 4, "e.g. BCBA"
    assert impl.lcs([], [1, 2]) == 0 and impl.lcs([1, 2], []) == 0, "empty sequences share nothing"
    assert impl.lcs([1, 2, 3], [1, 2, 3]) == 3
    assert impl.lcs(list("AXBYC"), list("ABC")) == 3, "gaps are allowed (a subsequence, not a substring)"


@pytest.mark.task("dynamic-programming")
def test_lcs_equals_brute_force(impl):
    impl.lcs([1], [1])

    @FAST
    @given(st.lists(st.sampled_from("abc"), max_size=8), st.lists(st.sampled_from("abc"), max_size=8))
    def check(a, b):
        expected = lcs_by_brute_force(a, b)
        assert impl.lcs(a, b) == expected, f"{''.join(a)!r} vs {''.join(b)!r}: expected {expected}"
    check()
