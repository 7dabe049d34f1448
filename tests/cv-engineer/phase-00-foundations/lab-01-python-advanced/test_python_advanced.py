"""Lab 01 checks: behaviour, not syntax. Files are opened only when consumed (counted), backoff delays come
from a fake sleep, IoU equals a pixel-counting brute force, the sliding maximum equals max() over every window
(hypothesis) with O(n) comparisons, and the LRU cache behaves call for call like functools.lru_cache."""
import functools
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def sample_folder(tmp_path_factory):
    """Five real sample pictures (halved) written as PNG/JPG (one in a subfolder), plus a text file to ignore."""
    tmp_path = tmp_path_factory.mktemp("images")
    pics = {"a_astronaut.png": skimage.data.astronaut(), "b_camera.png": skimage.data.camera(),
            "c_chelsea.jpg": skimage.data.chelsea(), "d_coffee.png": skimage.data.coffee(),
            "sub/e_coins.png": skimage.data.coins()}
    for name, img in pics.items():
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
        assert cv2.imwrite(str(path), img[::2, ::2])
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


@pytest.fixture
def image_folder(sample_folder, tmp_path):
    """A private copy, so a test may add files."""
    return Path(shutil.copytree(sample_folder, tmp_path / "images"))


def counting(impl, log):
    def reader(path):
        log.append(os.path.basename(path))
        return impl.load_image(path)
    return reader


# ------------------------------------------------------------------ lazy pipeline

@pytest.mark.task("lazy-pipeline")
def test_list_images_finds_images_only_sorted(impl, image_folder):
    got = [p.relative_to(image_folder).as_posix() for p in impl.list_images(image_folder)]
    assert got == ["a_astronaut.png", "b_camera.png", "c_chelsea.jpg", "d_coffee.png", "sub/e_coins.png"], \
        f"expected the five image files in sorted order (recursing into sub/, skipping notes.txt), got {got}"


@pytest.mark.task("lazy-pipeline")
def test_list_images_matches_extensions_in_any_case(impl, image_folder):
    shutil.copy(image_folder / "b_camera.png", image_folder / "f_CAMERA.PNG")
    shutil.copy(image_folder / "c_chelsea.jpg", image_folder / "g_cat.JPeG")
    got = [p.name for p in impl.list_images(image_folder)]
    assert "f_CAMERA.PNG" in got and "g_cat.JPeG" in got, \
        f"extensions should match in any case (.PNG, .JPeG are images too), got {got}"


@pytest.mark.task("lazy-pipeline")
def test_pipeline_opens_files_only_as_batches_are_consumed(impl, image_folder):
    opened = []
    stream = impl.image_batches(image_folder, (32, 24), 2, reader=counting(impl, opened))
    assert opened == [], f"building the pipeline should read nothing, but it read {opened}"
    first = next(stream)
    assert len(opened) == 2, f"the first batch of 2 should read exactly 2 files, it read {opened}"
    assert first.shape == (2, 24, 32, 3) and first.dtype == np.uint8, \
        f"expected a (2, 24, 32, 3) uint8 batch for size=(32, 24), got {first.shape} {first.dtype}"
    sizes = [len(b) for b in stream]
    assert sizes == [2, 1], f"five images in batches of 2 should give 2, 2, 1; after the first got {sizes}"
    assert len(opened) == 5, f"each file should be read once, got {opened}"


@pytest.mark.task("lazy-pipeline")
def test_pipeline_pixels_equal_opencv_resize(impl, image_folder):
    batch = next(impl.image_batches(image_folder, (40, 30), 5))
    want = cv2.resize(cv2.imread(str(image_folder / "a_astronaut.png")), (40, 30), interpolation=cv2.INTER_AREA)
    assert np.array_equal(batch[0], want), "the first image should equal cv2.imread + cv2.resize(INTER_AREA)"


@pytest.mark.task("lazy-pipeline")
def test_corrupt_file_raises_or_is_skipped_with_a_warning(impl, image_folder):
    (image_folder / "c_zz_broken.png").write_bytes(b"\x89PNG but truncated")
    with pytest.raises(impl.CorruptImageError, match="c_zz_broken"):
        list(impl.image_batches(image_folder, (16, 16), 2))
    with pytest.warns(UserWarning, match="c_zz_broken"):
        batches = list(impl.image_batches(image_folder, (16, 16), 2, on_error="skip"))
    assert [len(b) for b in batches] == [2, 2, 1], \
        f"skipping the broken file should leave 5 images in batches 2, 2, 1, got {[len(b) for b in batches]}"


@pytest.mark.task("lazy-pipeline")
def test_skip_mode_only_skips_corrupt_images(impl, image_folder):
    def reader(path):
        if path.name == "b_camera.png":
            raise PermissionError(f"{path}: permission denied")
        return impl.load_image(path)

    with pytest.raises(PermissionError):
        list(impl.image_batches(image_folder, (16, 16), 2, on_error="skip", reader=reader))


@pytest.mark.task("lazy-pipeline")
def test_batched_keeps_or_drops_the_short_tail(impl):
    items = [np.full((2,), i) for i in range(7)]
    assert [b[:, 0].tolist() for b in impl.batched(items, 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b[:, 0].tolist() for b in impl.batched(iter(items), 3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]


# ------------------------------------------------------------------ decorators

@pytest.mark.task("decorators")
def test_retry_backs_off_exponentially_and_returns(impl):
    sleeps, calls = [], []

    @impl.retry(max_attempts=5, base_delay=0.5, factor=3.0, sleep=sleeps.append)
    def flaky(x):
        """fails three times"""
        calls.append(x)
        if len(calls) < 4:
            raise TimeoutError("not yet")
        return x * 2

    assert flaky(21) == 42, "a call that succeeds on attempt 4 of 5 should return its value"
    assert len(calls) == 4, f"expected 4 calls, got {len(calls)}"
    assert sleeps == pytest.approx([0.5, 1.5, 4.5]), f"expected backoff 0.5, 1.5, 4.5 s, got {sleeps}"
    assert flaky.__name__ == "flaky" and flaky.__doc__ == "fails three times", "use functools.wraps"


@pytest.mark.task("decorators")
def test_retry_gives_up_after_max_attempts_with_the_last_error(impl):
    sleeps, calls = [], []

    @impl.retry(max_attempts=3, base_delay=1.0, sleep=sleeps.append)
    def always_fails():
        calls.append(1)
        raise ConnectionError(f"attempt {len(calls)}")

    with pytest.raises(ConnectionError, match="attempt 3"):
        always_fails()
    assert len(calls) == 3 and sleeps == [1.0, 2.0], \
        f"expected 3 calls and sleeps [1.0, 2.0] (none after the last), got {len(calls)} calls, sleeps {sleeps}"


@pytest.mark.task("decorators")
def test_retry_does_not_retry_unlisted_exceptions(impl):
    calls = []

    @impl.retry(max_attempts=4, exceptions=(ConnectionError,), sleep=lambda s: None)
    def bad_input():
        calls.append(1)
        raise KeyError("missing")

    with pytest.raises(KeyError):
        bad_input()
    assert len(calls) == 1, f"a KeyError is not in `exceptions`: expected 1 call, got {len(calls)}"


@pytest.mark.task("decorators")
def test_timed_records_durations_from_the_clock_even_on_error(impl):
    ticks = iter([10.0, 10.25, 20.0, 23.0])

    @impl.timed(clock=lambda: next(ticks))
    def work(fail=False):
        """does work"""
        if fail:
            raise RuntimeError("boom")
        return "done"

    assert work() == "done"
    with pytest.raises(RuntimeError):
        work(fail=True)
    assert work.timings == pytest.approx([0.25, 3.0]), f"expected timings [0.25, 3.0], got {work.timings}"
    assert work.__name__ == "work" and work.__doc__ == "does work", "use functools.wraps"


# ------------------------------------------------------------------ context managers

@pytest.mark.task("context-managers")
def test_timer_measures_with_the_given_clock_and_lets_errors_through(impl):
    ticks = iter([1.0, 3.5])
    with impl.Timer(clock=lambda: next(ticks)) as t:
        pass
    assert t.elapsed == pytest.approx(2.5), f"expected elapsed 2.5, got {t.elapsed}"
    ticks = iter([0.0, 0.75])
    timer = impl.Timer(clock=lambda: next(ticks))
    with pytest.raises(ZeroDivisionError):
        with timer:
            1 / 0
    assert timer.elapsed == pytest.approx(0.75), "elapsed should be set even when the block raises"


@pytest.mark.task("context-managers")
def test_atomic_write_replaces_on_success(impl, tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")
    with impl.atomic_write(target) as f:
        f.write('{"lr": 0.001}')
        assert target.read_text() == "old", "the target must keep its old content until the block succeeds"
    assert target.read_text() == '{"lr": 0.001}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"], "no temp file should remain"
    with impl.atomic_write(tmp_path / "w.bin", "wb") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "w.bin").read_bytes() == b"\x00\x01"


@pytest.mark.task("context-managers")
def test_atomic_write_puts_its_temp_file_beside_the_target(impl, tmp_path):
    target = tmp_path / "labels.csv"
    with impl.atomic_write(target) as f:
        f.write("id,label\n")
        beside = [p.name for p in tmp_path.iterdir()]
    assert len(beside) == 1 and beside[0] != "labels.csv", \
        f"while writing, the temp file should sit in the target's folder (same filesystem), found {beside}"
    assert target.read_text() == "id,label\n"


@pytest.mark.task("context-managers")
def test_atomic_write_keeps_old_file_and_cleans_up_on_exception(impl, tmp_path):
    target = tmp_path / "weights.txt"
    target.write_text("good weights")
    with pytest.raises(RuntimeError):
        with impl.atomic_write(target) as f:
            f.write("half written")
            raise RuntimeError("crash")
    assert target.read_text() == "good weights", "an exception must leave the old content in place"
    with pytest.raises(KeyboardInterrupt):
        with impl.atomic_write(tmp_path / "new.txt") as f:
            f.write("x")
            raise KeyboardInterrupt
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["weights.txt"], f"expected only weights.txt after two failed writes, found {left}"


# ------------------------------------------------------------------ bounding box

def brute_force_iou(a, b):
    """Count unit cells on an integer grid (independent of any formula)."""
    grid_a = np.zeros((40, 40), bool)
    grid_b = np.zeros((40, 40), bool)
    grid_a[a[1]:a[3], a[0]:a[2]] = True
    grid_b[b[1]:b[3], b[0]:b[2]] = True
    return (grid_a & grid_b).sum() / (grid_a | grid_b).sum()


int_box = st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(1, 9), st.integers(1, 9)).map(
    lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))


@pytest.mark.task("bounding-box")
def test_iou_hand_cases(impl):
    a, b = impl.BoundingBox(0, 0, 10, 10), impl.BoundingBox(5, 5, 15, 15)
    assert a.area == 100, f"area of a 10x10 box should be 100, got {a.area}"
    assert a.iou(b) == pytest.approx(25 / 175), f"expected 25/175 = 0.142857, got {a.iou(b)}"
    assert a.iou(a) == pytest.approx(1.0) and a.iou(impl.BoundingBox(20, 20, 30, 30)) == 0.0
    assert a.iou(impl.BoundingBox(10, 0, 20, 10)) == 0.0, "boxes that only touch share no area: IoU 0"


@pytest.mark.task("bounding-box")
@settings(max_examples=60, deadline=None)
@given(int_box, int_box)
def test_iou_equals_pixel_count(impl, a, b):
    got = impl.BoundingBox(*a).iou(impl.BoundingBox(*b))
    want = brute_force_iou(a, b)
    assert got == pytest.approx(want), f"IoU of {a} and {b}: counting cells gives {want}, got {got}"
    assert got == pytest.approx(impl.BoundingBox(*b).iou(impl.BoundingBox(*a))), "IoU should be symmetric"


@pytest.mark.task("bounding-box")
@pytest.mark.parametrize("args", [(5, 0, 5, 10), (0, 10, 10, 2), (0, 0, float("nan"), 1), (0, 0, 1, float("inf")),
                                  (0, 0, 4, 4, 1.5), (0, 0, 4, 4, -0.1)])
def test_invalid_boxes_raise_value_error(impl, args):
    with pytest.raises(ValueError):
        impl.BoundingBox(*args)


@pytest.mark.task("bounding-box")
@pytest.mark.parametrize("score", [0.0, 1.0])
def test_scores_at_the_ends_of_the_range_are_valid(impl, score):
    assert impl.BoundingBox(0, 0, 1, 1, score).score == score, f"score {score} lies in [0, 1] and is valid"


@pytest.mark.task("bounding-box")
def test_box_is_frozen_slotted_and_hashable(impl):
    box = impl.BoundingBox(1, 2, 3, 4, 0.9, 2)
    assert box.area == 4
    assert not hasattr(box, "__dict__"), "a slotted dataclass has no per-instance __dict__"
    with pytest.raises(AttributeError):
        box.x1 = 0  # frozen
    assert len({box, impl.BoundingBox(1, 2, 3, 4, 0.9, 2)}) == 1, "equal frozen boxes hash equal"


# ------------------------------------------------------------------ protocol

def three_squares():
    img = np.zeros((60, 80), np.uint8)
    cv2.rectangle(img, (5, 5), (14, 19), 255, -1)     # x 5..14, y 5..19 inclusive
    cv2.rectangle(img, (40, 10), (59, 29), 200, -1)
    cv2.rectangle(img, (10, 40), (29, 49), 255, -1)
    img[55, 70] = 255                                   # a 1-pixel speck, below min_area
    return img


@pytest.mark.task("protocol")
def test_blob_detector_finds_the_drawn_rectangles(impl):
    det = impl.BrightBlobDetector(threshold=128, min_area=20)
    assert isinstance(det, impl.Detector), "BrightBlobDetector should satisfy the Detector protocol"
    got = [(b.x1, b.y1, b.x2, b.y2) for b in det.detect(three_squares())]
    want = [(5, 5, 15, 20), (40, 10, 60, 30), (10, 40, 30, 50)]
    assert got == want, f"expected boxes {want} (exclusive right/bottom edges, sorted by y1, x1), got {got}"
    colour = cv2.cvtColor(three_squares(), cv2.COLOR_GRAY2BGR)
    assert len(det.detect(colour)) == 3, "a BGR image should give the same three boxes"


@pytest.mark.task("protocol")
def test_run_detectors_accepts_duck_typed_and_rejects_others(impl):
    class Fixed:                      # never inherits from Detector
        name = "fixed"

        def detect(self, image):
            return [impl.BoundingBox(0, 0, 1, 1)]

    class NoDetect:
        name = "broken"

    out = impl.run_detectors([Fixed(), impl.BrightBlobDetector()], three_squares())
    assert set(out) == {"fixed", "bright-blobs"} and len(out["bright-blobs"]) == 3, \
        f"expected results for 'fixed' and 'bright-blobs' (3 boxes), got { {k: len(v) for k, v in out.items()} }"
    with pytest.raises(TypeError, match="NoDetect"):
        impl.run_detectors([NoDetect()], three_squares())


@pytest.mark.task("protocol")
def test_blob_detector_boundaries_and_diagonal_blobs(impl):
    img = np.zeros((40, 60), np.uint8)
    img[2:6, 2:6] = 255          # two 4x4 squares touching only at a corner: one 8-connected blob
    img[6:10, 6:10] = 255
    img[20:24, 30:34] = 101      # 16 pixels just above the threshold: exactly min_area
    img[30:36, 2:12] = 100       # exactly at the threshold: not brighter, so not a blob
    got = [(b.x1, b.y1, b.x2, b.y2) for b in impl.BrightBlobDetector(threshold=100, min_area=16).detect(img)]
    want = [(2, 2, 10, 10), (30, 20, 34, 24)]
    assert got == want, (f"expected {want}: diagonal neighbours join (8-connectivity), a blob of exactly min_area "
                         f"counts, pixels equal to the threshold are not bright; got {got}")


# ------------------------------------------------------------------ sliding max

@pytest.mark.task("sliding-max")
def test_sliding_max_worked_example(impl):
    got = list(impl.sliding_window_max([1, 3, -1, -3, 5, 3, 6, 7], 3))
    assert got == [3, 3, 5, 5, 6, 7], f"expected [3, 3, 5, 5, 6, 7], got {got}"
    assert list(impl.sliding_window_max([4, 2], 5)) == [], "a window longer than the input yields nothing"


@pytest.mark.task("sliding-max")
@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(-20, 20), max_size=40), st.integers(1, 8))
def test_sliding_max_equals_brute_force(impl, values, k):
    want = [max(values[i:i + k]) for i in range(len(values) - k + 1)]
    got = list(impl.sliding_window_max(values, k))
    assert got == want, f"values {values}, k={k}: expected {want}, got {got}"


class Counted:
    comparisons = 0

    def __init__(self, v):
        self.v = v

    def _cmp(self, other, op):
        Counted.comparisons += 1
        return op(self.v, other.v)

    def __lt__(self, o): return self._cmp(o, lambda a, b: a < b)
    def __le__(self, o): return self._cmp(o, lambda a, b: a <= b)
    def __gt__(self, o): return self._cmp(o, lambda a, b: a > b)
    def __ge__(self, o): return self._cmp(o, lambda a, b: a >= b)
    def __eq__(self, o): return self._cmp(o, lambda a, b: a == b)
    __hash__ = None


@pytest.mark.task("sliding-max")
def test_sliding_max_is_linear_and_lazy(impl):
    rng = np.random.default_rng(0)
    n, k = 2000, 200
    values = [Counted(int(v)) for v in rng.integers(0, 10_000, n)]
    Counted.comparisons = 0
    out = list(impl.sliding_window_max(iter(values), k))
    assert len(out) == n - k + 1
    assert Counted.comparisons <= 3 * n, \
        f"O(n) needs at most ~2n comparisons; n={n}, k={k} took {Counted.comparisons} (brute force: ~n*k)"
    import itertools
    endless = impl.sliding_window_max(itertools.count(), 4)     # infinite input: must stream
    assert list(itertools.islice(endless, 3)) == [3, 4, 5]


# ------------------------------------------------------------------ LRU cache

@pytest.mark.task("lru-cache")
def test_lru_cache_get_put_and_eviction_order(impl):
    cache = impl.LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1          # a is now most recent
    cache.put("c", 3)                   # evicts b
    assert "b" not in cache and cache.get("b", "gone") == "gone"
    assert cache.get("a") == 1 and cache.get("c") == 3
    assert (cache.hits, cache.misses, cache.evictions, len(cache)) == (3, 1, 1, 2), \
        f"expected hits 3, misses 1, evictions 1, size 2; got {(cache.hits, cache.misses, cache.evictions, len(cache))}"


@pytest.mark.task("lru-cache")
def test_lru_put_refreshes_an_existing_key(impl):
    cache = impl.LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)                  # update: a becomes most recent
    cache.put("c", 3)                   # so b is the least recently used
    assert "a" in cache and "b" not in cache, "updating a key with put should make it the most recently used"
    assert cache.get("a") == 10 and len(cache) == 2


@pytest.mark.task("lru-cache")
def test_lru_decorator_caches_none_and_keys_on_all_arguments(impl):
    calls = []

    @impl.lru_cached(4)
    def lookup(a, b=0):
        calls.append((a, b))
        return None if a == 0 else 10 * a + b

    assert lookup(0) is None and lookup(0) is None
    assert calls == [(0, 0)], f"a cached None is still a result: expected one call, got {calls}"
    assert lookup(1, 2) == 12 and lookup(1, 3) == 13, "the cache key is every argument, not only the first"
    assert tuple(lookup.cache_info()) == (1, 3, 4, 3), f"expected hits 1, misses 3, got {lookup.cache_info()}"


@pytest.mark.task("lru-cache")
@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=60), st.integers(1, 4))
def test_lru_decorator_matches_functools(impl, keys, maxsize):
    ours_calls, ref_calls = [], []

    def ours_f(x):
        ours_calls.append(x)
        return x * x

    def ref_f(x):
        ref_calls.append(x)
        return x * x

    ours, ref = impl.lru_cached(maxsize)(ours_f), functools.lru_cache(maxsize)(ref_f)
    for k in keys:
        assert ours(k) == k * k
        ref(k)
    assert ours_calls == ref_calls, f"recomputations differ from functools.lru_cache: {ours_calls} vs {ref_calls}"
    got, want = tuple(ours.cache_info()), tuple(ref.cache_info())
    assert got == want, f"cache_info (hits, misses, maxsize, currsize): functools says {want}, got {got}"
    assert ours.cache.evictions == max(0, want[1] - maxsize), "every miss beyond maxsize evicts one entry"
