"""Image validation and preprocessing. Test images are encoded with Pillow (not OpenCV, which the code uses);
the expected model input is worked out here with numpy (block means, MNIST normalisation by hand)."""
import io

import numpy as np
import pytest
from PIL import Image

MEAN, STD = 0.1307, 0.3081


def encode(gray: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, format=fmt)
    return buf.getvalue()


def digit(h=28, w=28, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def status_of(impl, data, kind, **kw):
    with pytest.raises(impl.ImageError) as info:
        impl.validate_image(data, kind, **kw)
    message = str(info.value)
    assert "\n" not in message and len(message) > 10, f"want a one-line reason, got {message!r}"
    return info.value.status


@pytest.mark.task("validate-image")
def test_png_and_jpeg_decode_to_one_gray_channel(impl):
    img = digit(30, 20)
    got = impl.validate_image(encode(img), "image/png")
    assert got.shape == (30, 20) and got.dtype == np.uint8, f"want gray uint8 (30, 20), got {got.dtype} {got.shape}"
    assert np.array_equal(got, img), "a PNG is lossless: the decoded pixels must equal the ones sent"
    rgb = np.stack([img, img, img], axis=-1)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    got = impl.validate_image(buf.getvalue(), "image/png; charset=binary")
    assert got.shape == (30, 20), f"a colour PNG must come back as one gray channel, got shape {got.shape}"
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    got = impl.validate_image(encode(smooth, "JPEG"), "image/jpeg")
    assert got.shape == (32, 32) and np.abs(got.astype(int) - smooth).max() < 12, "JPEG should decode close to the original"


@pytest.mark.task("validate-image")
def test_wrong_content_type_is_415(impl):
    png = encode(digit())
    assert status_of(impl, png, "text/plain") == 415
    assert status_of(impl, png, None) == 415
    assert status_of(impl, png, "image/jpeg") == 415, "PNG bytes declared as JPEG must be refused (415)"
    assert status_of(impl, encode(digit(), "JPEG"), "image/png") == 415


@pytest.mark.task("validate-image")
def test_empty_and_corrupt_are_400(impl):
    png = encode(digit())
    assert status_of(impl, b"", "image/png") == 400
    assert status_of(impl, png[:40], "image/png") == 400, "a truncated PNG must be a 400"
    assert status_of(impl, b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "image/png") == 400


@pytest.mark.task("validate-image")
def test_size_limit_is_inclusive_and_413(impl):
    png = encode(digit())
    assert impl.validate_image(png, "image/png", max_bytes=len(png)).shape == (28, 28), \
        "a file of exactly max_bytes is allowed"
    assert status_of(impl, png, "image/png", max_bytes=len(png) - 1) == 413


@pytest.mark.task("validate-image")
def test_dimension_rule_is_inclusive_and_422(impl):
    for h, w in [(8, 8), (512, 8), (8, 512)]:
        assert impl.validate_image(encode(digit(h, w)), "image/png").shape == (h, w), f"{w}x{h} is allowed"
    for h, w in [(7, 28), (28, 7), (513, 28), (28, 513)]:
        assert status_of(impl, encode(digit(h, w)), "image/png") == 422, f"{w}x{h} must be a 422"


@pytest.mark.task("preprocess")
def test_28x28_is_only_normalised(impl):
    img = digit()
    got = impl.preprocess(img)
    assert got.shape == (1, 28, 28) and got.dtype == np.float32, f"want float32 (1, 28, 28), got {got.dtype} {got.shape}"
    want = (img.astype(np.float32) / 255 - MEAN) / STD
    np.testing.assert_allclose(got[0], want, atol=1e-5, err_msg="28x28 input: only (x/255 - mean)/std")


@pytest.mark.task("preprocess")
def test_larger_images_are_area_averaged(impl):
    for h, w in [(84, 84), (84, 56)]:
        img = digit(h, w, seed=h + w)
        fy, fx = h // 28, w // 28
        blocks = img.reshape(28, fy, 28, fx).astype(np.float64).mean(axis=(1, 3))   # each output = its block mean
        want = (np.round(blocks) / 255 - MEAN) / STD
        got = impl.preprocess(img)
        assert got.shape == (1, 28, 28), f"want (1, 28, 28), got {got.shape}"
        err = np.abs(got[0] - want).max()
        assert err < 1.01 / 255 / STD, f"{w}x{h}: want block means (area averaging), max error {err:.3f}"


@pytest.mark.task("preprocess")
def test_tall_image_keeps_orientation(impl):
    img = np.zeros((56, 28), np.uint8)
    img[:28] = 255                                   # top half white
    got = impl.preprocess(img)[0]
    assert got[:14].mean() > got[14:].mean() + 1, "the top half (white) must stay on top: check cv2.resize's (width, height)"
