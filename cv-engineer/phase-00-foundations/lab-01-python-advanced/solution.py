"""Lab 01 · Python patterns a CV engineer uses every day, each with behaviour you can test.

  1. Generators: a lazy pipeline that lists image files, reads them one at a time, resizes and batches them,
     and only touches a file when the consumer asks for it (what a DataLoader does under the hood).
  2. Decorators: `timed` (records wall time) and `retry` (exponential backoff, bounded attempts), both with an
     injectable clock/sleep so tests run without waiting.
  3. Context managers: a class-based `Timer` and an `atomic_write` that leaves either the old file or the
     complete new one on disk, never half a file, and no temp file behind on an exception.
  4. Dataclasses: a validated, slotted, frozen `BoundingBox` with area and IoU.
  5. Typing: a runtime-checkable `Detector` Protocol, satisfied by a class that never inherits from it.
  6. collections.deque: the O(n) sliding-window maximum (monotonic queue).
  7. Caching: an LRU cache from scratch that reports hits, misses and evictions like functools.lru_cache.

Run it:  python solution.py [--images 6] [--batch 4] [--size 64]
Outputs: outputs/.../images/ (the sample files), summary.json (written atomically)
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import tempfile
import time
import tracemalloc
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import cv2
import numpy as np
import skimage.data

import labkit

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


class CorruptImageError(ValueError):
    """A file that exists but does not decode as an image."""


# ------------------------------------------------------------------ 1. generators and a lazy image pipeline


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read one file as a BGR uint8 array (H, W, 3). Raises CorruptImageError when it does not decode."""
    data = np.frombuffer(Path(path).read_bytes(), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise CorruptImageError(f"{path} is not a readable image (empty or corrupt); delete or replace it, "
                                "or read with on_error='skip'")
    return image


def list_images(folder: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> Iterator[Path]:
    """Image paths under `folder` (recursively), sorted, lazily. Only lists names: opens nothing."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; pass the directory that holds the images")
    # BEGIN SOLUTION [lazy-pipeline] Walk with rglob, keep suffixes in `extensions` (any case), yield in sorted order.
    wanted = {e.lower() for e in extensions}
    yield from sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in wanted)
    # END SOLUTION


def read_images(paths: Iterable[Path], on_error: str = "raise",
                reader: Callable[[Path], np.ndarray] = load_image) -> Iterator[np.ndarray]:
    """Yield `reader(path)` for each path, one at a time, only when the consumer asks for the next image.

    on_error="raise": a CorruptImageError stops the stream; "skip": warn (naming the file) and go on.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    # BEGIN SOLUTION [lazy-pipeline] Loop over paths; try reader(path); on CorruptImageError warn+continue or re-raise.
    for path in paths:
        try:
            image = reader(path)
        except CorruptImageError as err:
            if on_error == "raise":
                raise
            warnings.warn(f"skipped {path}: {err}", stacklevel=2)
            continue
        yield image
    # END SOLUTION


def resize_images(images: Iterable[np.ndarray], size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Resize each image to size=(width, height) with INTER_AREA, lazily (a generator expression is enough)."""
    # BEGIN SOLUTION [lazy-pipeline] A generator expression over images calling cv2.resize (dsize is (width, height)).
    return (cv2.resize(img, size, interpolation=cv2.INTER_AREA) for img in images)
    # END SOLUTION


def batched(items: Iterable[np.ndarray], batch_size: int, drop_last: bool = False) -> Iterator[np.ndarray]:
    """Stack consecutive items into arrays of shape (batch_size, ...); the last short batch unless drop_last."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    # BEGIN SOLUTION [lazy-pipeline] Collect into a list; when it holds batch_size items yield np.stack and start over.
    batch: list[np.ndarray] = []
    for item in items:
        batch.append(item)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch and not drop_last:
        yield np.stack(batch)
    # END SOLUTION


def image_batches(folder: str | os.PathLike, size: tuple[int, int] = (64, 64), batch_size: int = 4,
                  on_error: str = "raise", reader: Callable[[Path], np.ndarray] = load_image) -> Iterator[np.ndarray]:
    """The whole pipeline: list -> read -> resize -> batch. Batches are (B, height, width, 3) uint8."""
    return batched(resize_images(read_images(list_images(folder), on_error, reader), size), batch_size)


# ------------------------------------------------------------------ 2. decorators


def timed(clock: Callable[[], float] = time.perf_counter) -> Callable:
    """Decorator factory: record each call's duration (seconds, by `clock`) in `wrapper.timings`.

    The duration is recorded even when the call raises. functools.wraps keeps __name__ and __doc__.
    """
    def decorator(func: Callable) -> Callable:
        # BEGIN SOLUTION [decorators] A wraps()-ed wrapper: read the clock, call, and append the difference in a finally.
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            start = clock()
            try:
                return func(*args, **kwargs)
            finally:
                wrapper.timings.append(clock() - start)

        wrapper.timings = []
        return wrapper
        # END SOLUTION
    return decorator


def retry(max_attempts: int = 3, base_delay: float = 0.1, factor: float = 2.0,
          exceptions: tuple[type[BaseException], ...] = (Exception,),
          sleep: Callable[[float], None] = time.sleep) -> Callable:
    """Decorator factory: call up to `max_attempts` times, sleeping base_delay * factor**i after failure i.

    Only `exceptions` are retried (anything else propagates at once); after the last attempt the last error
    is re-raised unchanged. Delays for max_attempts=4, base 0.1, factor 2: 0.1, 0.2, 0.4 (no sleep at the end).
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    if base_delay < 0 or factor < 1:
        raise ValueError(f"need base_delay >= 0 and factor >= 1, got {base_delay} and {factor}")

    def decorator(func: Callable) -> Callable:
        # BEGIN SOLUTION [decorators] Loop over attempts; return on success; on a listed exception re-raise if last, else sleep.
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            for attempt in range(max_attempts):
                try:
                    return func(*args, **kwargs)
                except exceptions:
                    if attempt == max_attempts - 1:
                        raise
                    sleep(base_delay * factor ** attempt)

        return wrapper
        # END SOLUTION
    return decorator


# ------------------------------------------------------------------ 3. context managers


class Timer:
    """`with Timer() as t: ...` then `t.elapsed` (seconds). Class-based: __enter__ / __exit__.

    Exceptions inside the block are not swallowed, but `elapsed` is still set.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.elapsed: float | None = None
        self._start: float | None = None

    def __enter__(self) -> Timer:
        # BEGIN SOLUTION [context-managers] Remember the start time and return self.
        self._start = self.clock()
        return self
        # END SOLUTION

    def __exit__(self, exc_type, exc, tb) -> bool:
        # BEGIN SOLUTION [context-managers] Set elapsed; return False so an exception propagates.
        self.elapsed = self.clock() - self._start
        return False
        # END SOLUTION


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Yield a file object open on a temp file beside `path`; on success os.replace it onto `path`.

    On an exception the temp file is deleted and `path` keeps its old content (or stays absent).
    Same folder matters: os.replace is atomic only within one filesystem.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    # BEGIN SOLUTION [context-managers] mkstemp in path.parent; yield the opened file; os.replace on success; unlink on error.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # END SOLUTION


# ------------------------------------------------------------------ 4. dataclasses: a validated bounding box


@dataclass(frozen=True, slots=True)
class BoundingBox:
    """Axis-aligned box in pixel corners (x1, y1) top-left, (x2, y2) bottom-right, x2 > x1 and y2 > y1.

    frozen: hashable and safe to share; slots: no per-instance __dict__ (smaller, and typos raise).
    """
    x1: float
    y1: float
    x2: float
    y2: float
    score: float = 1.0
    label: int = 0

    def __post_init__(self) -> None:
        # BEGIN SOLUTION [bounding-box] Raise ValueError for non-finite corners, x2 <= x1 or y2 <= y1, score outside [0, 1].
        corners = (self.x1, self.y1, self.x2, self.y2)
        if not all(math.isfinite(c) for c in corners):
            raise ValueError(f"box corners must be finite numbers, got {corners}")
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise ValueError(f"need x2 > x1 and y2 > y1, got {corners}; pass corners, not (x, y, w, h)")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score must lie in [0, 1], got {self.score}")
        # END SOLUTION

    @property
    def area(self) -> float:
        # BEGIN SOLUTION [bounding-box] Width times height.
        return (self.x2 - self.x1) * (self.y2 - self.y1)
        # END SOLUTION

    def iou(self, other: BoundingBox) -> float:
        """Intersection over union: |A ∩ B| / (|A| + |B| - |A ∩ B|), 0 for disjoint boxes."""
        # BEGIN SOLUTION [bounding-box] Overlap width = min of right edges - max of left edges, clipped at 0; same in y.
        w = max(0.0, min(self.x2, other.x2) - max(self.x1, other.x1))
        h = max(0.0, min(self.y2, other.y2) - max(self.y1, other.y1))
        inter = w * h
        return inter / (self.area + other.area - inter)
        # END SOLUTION


class PlainBox:
    """The same six fields in an ordinary class (with a __dict__), to measure what slots save."""

    def __init__(self, x1, y1, x2, y2, score=1.0, label=0):
        self.x1, self.y1, self.x2, self.y2, self.score, self.label = x1, y1, x2, y2, score, label


def bytes_per_instance(factory: Callable[[], object], n: int = 20_000) -> float:
    """Average bytes allocated per object when creating n of them (tracemalloc)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = [factory() for _ in range(n)]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del keep
    return (after - before) / n


# ------------------------------------------------------------------ 5. typing: a structural Protocol


@runtime_checkable
class Detector(Protocol):
    """Anything with `name` and `detect(image) -> list[BoundingBox]` is a Detector; no inheritance needed."""
    name: str

    def detect(self, image: np.ndarray) -> list[BoundingBox]: ...


class BrightBlobDetector:
    """Boxes around connected regions brighter than `threshold` with at least `min_area` pixels.

    It never mentions Detector, yet isinstance(BrightBlobDetector(), Detector) is True: structural typing.
    """
    name = "bright-blobs"

    def __init__(self, threshold: int = 128, min_area: int = 20):
        self.threshold, self.min_area = threshold, min_area

    def detect(self, image: np.ndarray) -> list[BoundingBox]:
        """image: gray (H, W) or BGR (H, W, 3) uint8. Boxes sorted by (y1, x1); x2/y2 are exclusive edges."""
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        # BEGIN SOLUTION [protocol] Threshold to a mask, cv2.connectedComponentsWithStats, skip label 0 and small blobs.
        mask = (image > self.threshold).astype(np.uint8)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        boxes = [BoundingBox(float(x), float(y), float(x + w), float(y + h))
                 for x, y, w, h, area in stats[1:count] if area >= self.min_area]
        return sorted(boxes, key=lambda b: (b.y1, b.x1))
        # END SOLUTION


def run_detectors(detectors: Sequence[object], image: np.ndarray) -> dict[str, list[BoundingBox]]:
    """Run each detector on the image: {detector.name: boxes}. Raises TypeError for an object that is not one."""
    # BEGIN SOLUTION [protocol] isinstance(d, Detector) checks the Protocol's members; reject others by type name.
    results = {}
    for det in detectors:
        if not isinstance(det, Detector):
            raise TypeError(f"{type(det).__name__} is not a Detector: it needs a `name` and a "
                            "`detect(image) -> list[BoundingBox]` method")
        results[det.name] = det.detect(image)
    return results
    # END SOLUTION


# ------------------------------------------------------------------ 6. deque: sliding-window maximum


def sliding_window(items: Iterable, n: int) -> Iterator[tuple]:
    """Overlapping windows of n consecutive items, as tuples: (0,1,2), (1,2,3), ... (not graded; a warm-up)."""
    window: deque = deque(maxlen=n)
    for item in items:
        window.append(item)
        if len(window) == n:
            yield tuple(window)


def sliding_window_max(values: Iterable, k: int) -> Iterator:
    """Maximum of every window of k consecutive values, lazily, in O(n) total.

    Keep a deque of indices whose values decrease from front to back. A new value pops every smaller-or-equal
    value off the back (they can never be a maximum again); the front falls out once it leaves the window.
    Each index enters and leaves the deque once, so the work is O(n) whatever k is (brute force is O(n k)).
    """
    if k < 1:
        raise ValueError(f"window size k must be at least 1, got {k}")
    # BEGIN SOLUTION [sliding-max] Store (index, value) pairs; pop the back while <= new value; pop front if index <= i - k.
    window: deque = deque()
    for i, value in enumerate(values):
        while window and window[-1][1] <= value:
            window.pop()
        window.append((i, value))
        if window[0][0] <= i - k:
            window.popleft()
        if i >= k - 1:
            yield window[0][1]
    # END SOLUTION


# ------------------------------------------------------------------ 7. caching: LRU from scratch


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    maxsize: int
    currsize: int


class LRUCache:
    """A least-recently-used cache: get/put in O(1) on an OrderedDict (a hash map plus a linked list).

    Counts hits, misses and evictions. maxsize >= 1.
    """

    def __init__(self, maxsize: int = 128):
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self.hits = self.misses = self.evictions = 0
        self._data: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key) -> bool:
        return key in self._data

    def get(self, key, default=None):
        """Return the value (and mark it most recently used) or `default`; counts a hit or a miss."""
        # BEGIN SOLUTION [lru-cache] On a hit move_to_end and count it; otherwise count a miss.
        if key in self._data:
            self._data.move_to_end(key)
            self.hits += 1
            return self._data[key]
        self.misses += 1
        return default
        # END SOLUTION

    def put(self, key, value) -> None:
        """Insert or update as most recently used; evict the least recently used beyond maxsize."""
        # BEGIN SOLUTION [lru-cache] Assign, move_to_end, then popitem(last=False) while over maxsize.
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)
            self.evictions += 1
        # END SOLUTION


_MISSING = object()


def lru_cached(maxsize: int = 128) -> Callable:
    """Decorator like functools.lru_cache(maxsize) for positional hashable arguments, built on LRUCache.

    The wrapper exposes `cache_info()` (hits, misses, maxsize, currsize) and `cache` (the LRUCache).
    """
    def decorator(func: Callable) -> Callable:
        cache = LRUCache(maxsize)

        # BEGIN SOLUTION [lru-cache] Look the args tuple up; on a miss call func and put the result.
        @functools.wraps(func)
        def wrapper(*args):
            value = cache.get(args, _MISSING)
            if value is _MISSING:
                value = func(*args)
                cache.put(args, value)
            return value
        # END SOLUTION

        wrapper.cache = cache
        wrapper.cache_info = lambda: CacheInfo(cache.hits, cache.misses, cache.maxsize, len(cache))
        return wrapper
    return decorator


# ------------------------------------------------------------------ demo


SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page")


def write_sample_images(folder: Path, count: int) -> list[Path]:
    """Save `count` scikit-image sample pictures as PNG (BGR on disk, as OpenCV writes), plus nothing else."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SAMPLES[:count]:
        img = getattr(skimage.data, name)()
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)
        path = folder / f"{name}.png"
        cv2.imwrite(str(path), img)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6, help=f"sample images to write (max {len(SAMPLES)})")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="resize to size x size")
    args = parser.parse_args(argv)
    out = labkit.output_dir(__file__)

    print("1. lazy pipeline")
    folder = out / "images"
    write_sample_images(folder, min(args.images, len(SAMPLES)))
    (folder / "zz_corrupt.png").write_bytes(b"this is not a PNG")
    opened: list[str] = []

    def counting_reader(path: Path) -> np.ndarray:
        opened.append(path.name)
        return load_image(path)

    stream = image_batches(folder, (args.size, args.size), args.batch, on_error="skip", reader=counting_reader)
    print(f"  pipeline built, files opened so far: {len(opened)}")
    first = next(stream)
    print(f"  first batch {first.shape} {first.dtype}; files opened: {len(opened)} {opened}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rest = list(stream)
    print(f"  remaining batches: {[b.shape[0] for b in rest]}; files opened: {len(opened)}; "
          f"skipped: {[str(w.message).split(':')[0].split('/')[-1] for w in caught]}")

    print("2. decorators")
    delays: list[float] = []
    calls = {"n": 0}

    @retry(max_attempts=4, base_delay=0.1, factor=2.0, exceptions=(ConnectionError,), sleep=delays.append)
    def flaky_fetch(key: str) -> str:
        """Fails twice, then answers."""
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("transient")
        return f"payload for {key}"

    print(f"  {flaky_fetch.__name__}('batch-7') -> {flaky_fetch('batch-7')!r} after {calls['n']} calls, "
          f"backoff sleeps {delays}")

    @timed()
    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (7, 7), 0)

    for batch in [first, *rest]:
        blur(batch[0])
    print(f"  timed blur: {len(blur.timings)} calls, mean {1e3 * np.mean(blur.timings):.3f} ms")

    print("3. context managers")
    with Timer() as t, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n_images = sum(len(b) for b in image_batches(folder, (args.size, args.size), args.batch, "skip"))
    print(f"  Timer: a full pass over {n_images} images took {1e3 * t.elapsed:.1f} ms")
    summary_path = out / "summary.json"
    try:
        with atomic_write(summary_path) as f:
            f.write('{"half": ')
            raise RuntimeError("simulated crash mid-write")
    except RuntimeError:
        pass
    print(f"  crash mid-write left summary.json: {summary_path.exists()}; temp files left: "
          f"{len(list(out.glob('.summary.json.*')))}")

    print("4. dataclass BoundingBox")
    a, b = BoundingBox(0, 0, 10, 10), BoundingBox(5, 5, 15, 15)
    print(f"  iou({a.x1, a.y1, a.x2, a.y2}, {b.x1, b.y1, b.x2, b.y2}) = {a.iou(b):.6f} (25 / 175)")
    try:
        BoundingBox(10, 0, 5, 8)
    except ValueError as err:
        print(f"  BoundingBox(10, 0, 5, 8) -> ValueError: {err}")
    slotted = bytes_per_instance(lambda: BoundingBox(1.0, 2.0, 3.0, 4.0))
    plain = bytes_per_instance(lambda: PlainBox(1.0, 2.0, 3.0, 4.0))
    print(f"  memory per instance: slots {slotted:.0f} B, plain class {plain:.0f} B")

    print("5. Protocol")
    coins = skimage.data.coins()
    found = run_detectors([BrightBlobDetector(threshold=150, min_area=200)], coins)
    print(f"  isinstance(BrightBlobDetector(), Detector) = {isinstance(BrightBlobDetector(), Detector)}; "
          f"coins image: {len(found['bright-blobs'])} bright blobs of >= 200 px")

    print("6. sliding-window maximum")
    example = [1, 3, -1, -3, 5, 3, 6, 7]
    print(f"  {example}, k=3 -> {list(sliding_window_max(example, 3))}")
    row = coins[100].astype(int).tolist()
    print(f"  coins row 100 ({len(row)} px), k=15 max: first 8 = {list(sliding_window_max(row, 15))[:8]}")

    print("7. LRU cache")

    def area_of(w: int, h: int) -> int:
        return w * h

    ours, ref = lru_cached(3)(area_of), functools.lru_cache(3)(area_of)
    for key in [(1, 2), (3, 4), (1, 2), (5, 6), (7, 8), (3, 4), (1, 2)]:
        ours(*key), ref(*key)
    print(f"  ours:      {ours.cache_info()}  evictions={ours.cache.evictions}")
    print(f"  functools: {ref.cache_info()}")

    summary = {"batches": 1 + len(rest), "files_opened": len(opened), "iou_example": a.iou(b),
               "bytes_slots": round(slotted), "bytes_plain": round(plain), "timer_s": t.elapsed,
               "cache": ours.cache_info()._asdict()}
    with atomic_write(summary_path) as f:
        json.dump(summary, f, indent=2)
    print(f"summary written atomically to {summary_path}")


if __name__ == "__main__":
    labkit.run(main)
