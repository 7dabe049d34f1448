"""Algorithms and data structures for CV coding screens: pattern first, then the vision problem it solves.

Write each one from memory, then run `make check LAB=02-algorithms-data-structures` (add `TASK=<name>` for one).
Each function's docstring states the time and space an interviewer expects you to quote.

| task                | functions                                      | where it shows up in vision work              |
|---------------------|------------------------------------------------|-----------------------------------------------|
| sliding-window      | max_subarray, sliding_window_max               | temporal max pooling, best burst of activity  |
| two-pointers        | remove_duplicates, merge_intervals             | de-duplication, merging track segments        |
| binary-search       | find_threshold, max_feasible_batch             | picking a score threshold, sizing a batch     |
| heaps               | topk_detections, kth_largest                   | keeping the best K boxes, score cut-offs      |
| graphs              | topological_sort, count_components             | pipeline DAGs, grouping linked objects        |
| dynamic-programming | lcs                                            | matching two trajectories or label sequences  |
| iou-nms             | box_iou, nms                                   | every detector's post-processing              |
| assignment          | match_tracks_to_detections                     | SORT / DeepSORT tracking                      |
| hashing             | dhash, hamming_distance                        | near-duplicate frames and images              |
| vectorize           | pairwise_l2, chunked_pairwise                  | embedding search without loops or OOM         |

Boxes are (x1, y1, x2, y2) with x2 > x1, y2 > y1, in continuous coordinates (area = width * height, no +1).
"""
from __future__ import annotations

import argparse
import heapq
import math
import random
from collections import deque

import cv2
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

import labkit
from labkit import assets


# ============================================================== sliding window

def max_subarray(arr: list) -> int:
    """Largest sum of a non-empty contiguous run (Kadane). All-negative input gives its largest element.

    Time O(N), space O(1): the best run ending at i either extends the best run ending at i-1 or starts at i.
    """
    if len(arr) == 0:
        raise ValueError("max_subarray needs at least one number (an empty list has no non-empty run)")
    # BEGIN SOLUTION [sliding-window] Track the best sum of a run ending here (extend it or restart at x) and the best seen so far; both start at arr[0].
    best = ending_here = arr[0]
    for x in arr[1:]:
        ending_here = max(x, ending_here + x)
        best = max(best, ending_here)
    return best
    # END SOLUTION


def sliding_window_max(nums: list, k: int) -> list:
    """Maximum of every window of k consecutive numbers: len(nums) - k + 1 values ([] if k > len(nums)).

    Time O(N): a deque of indices whose values decrease from front to back; each index enters and leaves once.
    Space O(k). Example: [1, 3, -1, -3, 5, 3, 6, 7], k=3 -> [3, 3, 5, 5, 6, 7].
    """
    if k < 1:
        raise ValueError(f"window size k must be >= 1, got {k}")
    # BEGIN SOLUTION [sliding-window] For each i: drop the front index if it left the window (<= i - k); pop back indices whose value is <= x; append i; from i = k-1 on, the front is the max.
    window: deque[int] = deque()
    out = []
    for i, x in enumerate(nums):
        if window and window[0] <= i - k:
            window.popleft()
        while window and nums[window[-1]] <= x:
            window.pop()
        window.append(i)
        if i >= k - 1:
            out.append(nums[window[0]])
    return out
    # END SOLUTION


# ============================================================== two pointers

def remove_duplicates(nums: list) -> int:
    """Remove duplicates from a SORTED list in place; return the count n of unique values, which then fill
    nums[:n] in order (what lies beyond n does not matter). Time O(N), extra space O(1)."""
    # BEGIN SOLUTION [two-pointers] A slow pointer marks the last unique value written; a fast pointer scans; copy each new value to slow + 1. Empty input: 0.
    if not nums:
        return 0
    slow = 0
    for fast in range(1, len(nums)):
        if nums[fast] != nums[slow]:
            slow += 1
            nums[slow] = nums[fast]
    return slow + 1
    # END SOLUTION


def merge_intervals(intervals: list) -> list:
    """Merge overlapping or touching [start, end] intervals; return a NEW sorted list of [start, end] lists
    ([1, 3] and [3, 5] merge into [1, 5]). The caller's list and its intervals are left untouched.
    Time O(N log N) for the sort, then one O(N) pass; space O(N) for the output."""
    # BEGIN SOLUTION [two-pointers] Sort copies by start; extend the last merged interval while the next start <= its end (keep the larger end); else start a new one.
    merged: list[list] = []
    for start, end in sorted(([s, e] for s, e in intervals), key=lambda iv: iv[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged
    # END SOLUTION


# ============================================================== binary search (and when not to use it)

def find_threshold(scores: list, labels: list, target_precision: float) -> float:
    """Smallest score threshold t (predict positive when score >= t) whose precision TP / (TP + FP) reaches
    target_precision; among the thresholds that reach it this one has the highest recall. math.inf if none does.

    Precision is NOT monotone in t (one high-scoring false positive can sink it), so bisecting on t can miss the
    answer. Sort once and sweep the distinct scores from high to low, keeping running TP and FP counts:
    time O(N log N), space O(N). Samples with equal scores enter together (one threshold cannot split them).
    """
    if len(scores) != len(labels):
        raise ValueError(f"scores and labels differ in length ({len(scores)} vs {len(labels)})")
    # BEGIN SOLUTION [binary-search] Sort (score, label) by score descending; walk groups of equal score adding to TP/FP; after each whole group, if TP/(TP+FP) >= target remember that score; return the last remembered (or inf).
    pairs = sorted(zip(scores, labels), key=lambda sl: -sl[0])
    best, tp, fp, i = math.inf, 0, 0, 0
    while i < len(pairs):
        score = pairs[i][0]
        while i < len(pairs) and pairs[i][0] == score:
            tp, fp = tp + bool(pairs[i][1]), fp + (not pairs[i][1])
            i += 1
        if tp / (tp + fp) >= target_precision:
            best = score
    return float(best)
    # END SOLUTION


def max_feasible_batch(latency_fn, max_latency_ms: float, max_batch: int = 512) -> int:
    """Largest batch size b in [1, max_batch] with latency_fn(b) <= max_latency_ms, assuming latency never falls
    as the batch grows; 0 when even a batch of 1 is too slow. Binary search: O(log max_batch) calls of latency_fn
    (each call is a real measurement, so the count is what matters), O(1) space."""
    # BEGIN SOLUTION [binary-search] Invariant: lo is feasible (start at 0 = "none"), hi + 1 is not; probe mid = (lo + hi + 1) // 2 (round up, or lo = mid never moves); feasible -> lo = mid, else hi = mid - 1.
    lo, hi = 0, max_batch
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if latency_fn(mid) <= max_latency_ms:
            lo = mid
        else:
            hi = mid - 1
    return lo
    # END SOLUTION


# ============================================================== heaps and selection

def topk_detections(detections: list, k: int) -> list:
    """The k highest-scoring (score, box) pairs, best first; equal scores keep their input order. Boxes may be
    numpy arrays, which cannot be compared, so the heap must never fall back to comparing boxes.
    Time O(N log k) with a min-heap of size k, space O(k)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    # BEGIN SOLUTION [heaps] Min-heap of (score, -index, index): the root is the weakest kept; on equal scores the later detection is weaker. Push, pop when size > k; sort what is left.
    heap: list[tuple] = []
    for index, (score, _box) in enumerate(detections):
        heapq.heappush(heap, (score, -index, index))
        if len(heap) > k:
            heapq.heappop(heap)
    return [detections[index] for _, _, index in sorted(heap, reverse=True)]
    # END SOLUTION


def kth_largest(nums: list, k: int) -> int:
    """The k-th largest value (k = 1 is the maximum; duplicates count: [3, 3, 1] has 2nd largest 3).
    Quickselect with a random pivot and a three-way partition: average O(N), worst O(N^2), extra space O(N) for
    the working copy. The caller's list is not reordered."""
    if not 1 <= k <= len(nums):
        raise ValueError(f"k must be between 1 and len(nums)={len(nums)}, got {k}")
    rng = random.Random(0)
    # BEGIN SOLUTION [heaps] Work on a copy; target index = len - k in ascending order; partition around a random pivot into <, ==, >; keep only the part that holds the target.
    values, target = list(nums), len(nums) - k
    while True:
        pivot = values[rng.randrange(len(values))]
        lower = [x for x in values if x < pivot]
        equal = sum(1 for x in values if x == pivot)
        if target < len(lower):
            values = lower
        elif target < len(lower) + equal:
            return pivot
        else:
            target -= len(lower) + equal
            values = [x for x in values if x > pivot]
    # END SOLUTION


# ============================================================== graphs

def topological_sort(n: int, edges: list) -> list:
    """An order of nodes 0..n-1 in which u comes before v for every edge (u, v); [] if there is a cycle.
    Kahn's algorithm: repeatedly take a node with no remaining incoming edges. Time O(N + E), space O(N + E)."""
    if any(not (0 <= u < n and 0 <= v < n) for u, v in edges):
        raise ValueError(f"every edge must join nodes in 0..{n - 1}")
    # BEGIN SOLUTION [graphs] Adjacency lists and in-degrees; queue the nodes with in-degree 0; pop, emit, decrement its successors' in-degree, queue those reaching 0; a cycle leaves nodes unemitted.
    successors: list[list[int]] = [[] for _ in range(n)]
    in_degree = [0] * n
    for u, v in edges:
        successors[u].append(v)
        in_degree[v] += 1
    ready = deque(node for node in range(n) if in_degree[node] == 0)
    order = []
    while ready:
        u = ready.popleft()
        order.append(u)
        for v in successors[u]:
            in_degree[v] -= 1
            if in_degree[v] == 0:
                ready.append(v)
    return order if len(order) == n else []
    # END SOLUTION


def count_components(n: int, edges: list) -> int:
    """Number of connected components of an undirected graph on nodes 0..n-1. Union-find with path halving and
    union by rank: O((N + E) * alpha(N)), effectively linear; space O(N)."""
    if any(not (0 <= u < n and 0 <= v < n) for u, v in edges):
        raise ValueError(f"every edge must join nodes in 0..{n - 1}")
    parent, rank = list(range(n)), [0] * n

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving: point at the grandparent as we climb
            x = parent[x]
        return x

    # BEGIN SOLUTION [graphs] Start with n components; for each edge find both roots; if they differ, hang the lower-rank root under the other (bump rank on a tie) and count one fewer component.
    components = n
    for u, v in edges:
        ru, rv = find(u), find(v)
        if ru == rv:
            continue
        if rank[ru] < rank[rv]:
            ru, rv = rv, ru
        parent[rv] = ru
        if rank[ru] == rank[rv]:
            rank[ru] += 1
        components -= 1
    return components
    # END SOLUTION


# ============================================================== dynamic programming

def lcs(s1: list, s2: list) -> int:
    """Length of the longest common subsequence (order kept, gaps allowed) of two sequences.
    dp[i][j] = LCS of s1[:i] and s2[:j]: dp[i-1][j-1] + 1 on a match, else max(dp[i-1][j], dp[i][j-1]).
    Time O(N * M); space O(M) keeping one previous row."""
    # BEGIN SOLUTION [dynamic-programming] Keep the previous row (len(s2) + 1 zeros); build each new row left to right from prev[j-1], prev[j] and row[j-1].
    prev = [0] * (len(s2) + 1)
    for a in s1:
        row = [0] * (len(s2) + 1)
        for j, b in enumerate(s2, start=1):
            row[j] = prev[j - 1] + 1 if a == b else max(prev[j], row[j - 1])
        prev = row
    return prev[-1]
    # END SOLUTION


# ============================================================== IoU and NMS

def box_iou(boxes1, boxes2) -> np.ndarray:
    """IoU of every box in boxes1 (N, 4) with every box in boxes2 (M, 4), as an (N, M) float64 array.
    IoU = intersection / (area1 + area2 - intersection); 0 where the union is empty.
    Time O(N * M) with broadcasting, space O(N * M)."""
    a = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    # BEGIN SOLUTION [iou-nms] Overlap corners: max of the top-lefts, min of the bottom-rights, broadcast (N,1,2) against (1,M,2); clamp widths and heights at 0 before multiplying.
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])            # (N, M, 2)
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])        # (N, M, 2)
    wh = np.clip(bottom_right - top_left, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    # END SOLUTION


def nms(boxes, scores, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: visit boxes by decreasing score (equal scores: lower index first), keep a
    box, and drop every later box whose IoU with it is ABOVE iou_threshold (IoU exactly at the threshold
    survives, as in torchvision.ops.nms). Returns the kept indices, highest score first.
    Time O(N log N) for the sort plus O(N^2) IoU checks in the worst case; space O(N)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    # BEGIN SOLUTION [iou-nms] Stable argsort of -scores; while candidates remain: keep the first, compute its IoU with the rest (box_iou), keep only those with IoU <= threshold.
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        order = rest[box_iou(boxes[best], boxes[rest])[0] <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)
    # END SOLUTION


# ============================================================== assignment

def match_tracks_to_detections(cost_matrix: np.ndarray, threshold: float = 0.7) -> list:
    """Match tracks (rows) to detections (columns) by minimum total cost, with cost usually 1 - IoU.
    Solve the whole assignment first (Hungarian method, scipy.optimize.linear_sum_assignment), then drop the
    pairs whose cost is not strictly below `threshold` (those become unmatched tracks and new detections).
    Returns (track, detection) int pairs sorted by track. Works for rectangular matrices.
    Time O(n^3) for n = max(N, M); space O(N * M)."""
    cost = np.asarray(cost_matrix, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost_matrix must be 2-D (tracks x detections), got shape {cost.shape}")
    if cost.size == 0:
        return []
    # BEGIN SOLUTION [assignment] Solve the whole assignment with scipy's Hungarian solver first, then keep only the pairs whose cost is below the threshold (as Python ints).
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < threshold]
    # END SOLUTION


# ============================================================== perceptual hashing

def dhash(image_array, hash_size: int = 8) -> int:
    """Difference hash: a hash_size * hash_size bit integer that barely changes when an image is resized,
    re-encoded or brightened, so near-duplicate frames have a small Hamming distance.

    Steps: grayscale; RESIZE to hash_size rows by hash_size + 1 columns (cv2.INTER_AREA), whatever the input size;
    bit = 1 where a pixel is brighter than its left neighbour; bits read row by row, the first one most
    significant. Time O(H * W) for the resize, space O(hash_size^2).
    """
    img = np.asarray(image_array)
    if img.ndim == 3:  # OpenCV order: BGR or BGRA
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    if img.ndim != 2 or min(img.shape) == 0:
        raise ValueError(f"dhash expects a non-empty gray (H, W) or color (H, W, 3) image, got shape {img.shape}")
    if img.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        img = img.astype(np.float32)
    # BEGIN SOLUTION [hashing] cv2.resize to (width=hash_size+1, height=hash_size) with INTER_AREA; compare each pixel with its left neighbour (small[:, 1:] > small[:, :-1]); fold the bits, first one highest.
    small = cv2.resize(img, (hash_size + 1, hash_size), interpolation=cv2.INTER_AREA)
    brighter = small[:, 1:] > small[:, :-1]                                   # (hash_size, hash_size) bools
    value = 0
    for bit in brighter.ravel():
        value = (value << 1) | int(bit)
    return value
    # END SOLUTION


def hamming_distance(h1: int, h2: int) -> int:
    """Number of bit positions where two hashes differ. For 64-bit dHashes, <= 10 usually means the same picture.
    Time O(bits) (one XOR and a popcount)."""
    if h1 < 0 or h2 < 0:
        raise ValueError("hashes are non-negative integers")
    # BEGIN SOLUTION [hashing] XOR leaves a 1 where the bits differ; count the ones (int.bit_count).
    return (h1 ^ h2).bit_count()
    # END SOLUTION


# ============================================================== vectorise, then chunk

def pairwise_l2(A, B) -> torch.Tensor:
    """Euclidean distances between every row of A (N, D) and every row of B (M, D), as (N, M), without a Python
    loop: |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, so one matrix product does the heavy lifting. Rounding can push a
    squared distance slightly below 0: clamp before the square root (or identical rows give NaN).
    Time O(N * M * D), memory O(N * M) for the result."""
    A, B = torch.as_tensor(A), torch.as_tensor(B)
    if A.dim() != 2 or B.dim() != 2 or A.size(1) != B.size(1):
        raise ValueError(f"expected A (N, D) and B (M, D) with the same D, got {tuple(A.shape)} and {tuple(B.shape)}")
    # BEGIN SOLUTION [vectorize] Expand |a - b|^2 so one matrix product does the work; shape the two squared-norm terms as a column and a row; clamp before the root.
    a_sq = (A * A).sum(dim=1, keepdim=True)              # (N, 1)
    b_sq = (B * B).sum(dim=1, keepdim=True).T            # (1, M)
    return (a_sq + b_sq - 2 * A @ B.T).clamp(min=0).sqrt()
    # END SOLUTION


def chunked_pairwise(A, B, chunk_size: int = 1024) -> torch.Tensor:
    """pairwise_l2 for large A, chunk_size rows at a time, so the peak intermediate memory is
    O(chunk_size * M) instead of O(N * M) for the products. Same result, same O(N * M * D) time."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    A = torch.as_tensor(A)
    # BEGIN SOLUTION [vectorize] Slices A[i:i + chunk_size] for i in range(0, len(A), chunk_size) (the last one may be short); pairwise_l2 each against all of B; torch.cat along rows.
    return torch.cat([pairwise_l2(A[i:i + chunk_size], B) for i in range(0, len(A), chunk_size)], dim=0)
    # END SOLUTION


# ============================================================== demo

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="CV algorithm questions: run each answer once on a small example")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    print(f"[sliding-window]      Kadane on [-2, 1, -3, 4, -1, 2, 1, -5, 4]: {max_subarray([-2, 1, -3, 4, -1, 2, 1, -5, 4])}; "
          f"window max k=3: {sliding_window_max([1, 3, -1, -3, 5, 3, 6, 7], 3)}")
    nums = [1, 1, 2, 3, 3]
    n = remove_duplicates(nums)
    print(f"[two-pointers]        dedupe [1, 1, 2, 3, 3] -> {n}, {nums[:n]}; "
          f"merge: {merge_intervals([[1, 3], [2, 6], [8, 10], [15, 18], [18, 20]])}")
    scores = [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    labels = [0, 1, 1, 1, 0, 1, 0, 0]
    calls = []
    batch = max_feasible_batch(lambda b: calls.append(b) or 2 + 0.5 * b, 20.0)
    print(f"[binary-search]       threshold for precision >= 0.75: {find_threshold(scores, labels, 0.75)} "
          f"(the top score is a false positive); batch under 20 ms at 2 + 0.5 b ms: {batch} in {len(calls)} probes")
    dets = [(0.9, np.array([0, 0, 10, 10])), (0.5, np.array([1, 1, 5, 5])), (0.9, np.array([2, 2, 8, 8])),
            (0.7, np.array([3, 3, 9, 9]))]
    print(f"[heaps]               top-3 scores with a tie and numpy boxes: {[s for s, _ in topk_detections(dets, 3)]}; "
          f"3rd largest of [3, 2, 3, 1, 2, 4, 5, 5, 6]: {kth_largest([3, 2, 3, 1, 2, 4, 5, 5, 6], 3)}")
    print(f"[graphs]              pipeline order: {topological_sort(5, [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)])}; "
          f"cycle: {topological_sort(3, [(0, 1), (1, 2), (2, 0)])}; components: {count_components(5, [(0, 1), (1, 2), (3, 4)])}")
    print(f"[dynamic-programming] LCS('ABCBDAB', 'BDCABA') = {lcs(list('ABCBDAB'), list('BDCABA'))}")

    boxes = np.array([[10, 10, 50, 50], [12, 12, 52, 52], [100, 100, 140, 150], [11, 9, 49, 51], [0, 0, 20, 20]])
    kept = nms(boxes, np.array([0.9, 0.8, 0.75, 0.95, 0.3]), 0.5)
    print(f"[iou-nms]             IoU of the first two boxes {box_iou(boxes[:1], boxes[1:2])[0, 0]:.3f}; NMS at 0.5 keeps {kept.tolist()}")
    tracks = np.array([[10, 10, 50, 50], [100, 100, 140, 150], [200, 200, 220, 220]])
    detections = np.array([[102, 98, 141, 152], [12, 11, 51, 49], [300, 300, 320, 330]])
    print(f"[assignment]          tracks -> detections (cost 1 - IoU < 0.7): "
          f"{match_tracks_to_detections(1 - box_iou(tracks, detections))}")

    photo = assets.sample_image("camera", size=256)
    copies = {"half size": cv2.resize(photo, (128, 128), interpolation=cv2.INTER_AREA),
              "brighter": cv2.convertScaleAbs(photo, alpha=1.1, beta=15),
              "JPEG q=30": cv2.imdecode(cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 30])[1], cv2.IMREAD_COLOR),
              "another photo": assets.sample_image("coins", size=256)}
    base = dhash(photo)
    print(f"[hashing]             dHash of 'camera' {base:016x}; Hamming to: "
          + ", ".join(f"{name} {hamming_distance(base, dhash(img))}" for name, img in copies.items()))

    A, B = torch.as_tensor(rng.normal(size=(2500, 64))), torch.as_tensor(rng.normal(size=(300, 64)))
    gap = (chunked_pairwise(A, B, 1024) - torch.cdist(A, B, compute_mode="donot_use_mm_for_euclid_dist")).abs().max()
    print(f"[vectorize]           2500 x 300 distances in chunks of 1024 (3 chunks, the last short): max gap to "
          f"torch.cdist {gap:.1e}")


if __name__ == "__main__":
    labkit.run(main)
