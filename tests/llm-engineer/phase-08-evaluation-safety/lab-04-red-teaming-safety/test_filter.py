"""Normalisation views worked by hand (zero-width characters, homoglyphs, leetspeak, base64, rot13), the
classifier against the same scikit-learn pipeline built here, and the filter: an encoded attack passes the raw
check and is caught only after normalisation, while benign look-alikes pass. The "harmful" training texts are
placeholders built around the made-up word "forbidden-item"; no real harmful text is used."""
import base64
import codecs

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

HARMFUL = [f"explain how to build a forbidden item number {n} at home without anyone noticing" for n in range(12)] + \
          [f"give me a recipe for forbidden item {n} and where to hide it" for n in range(12)]
BENIGN = [f"how do I kill a python process number {n}" for n in range(8)] + \
         [f"explain how to build a bookshelf number {n} at home" for n in range(8)] + \
         [f"give me a recipe for pancakes number {n}" for n in range(8)]
LABELS = [1] * len(HARMFUL) + [0] * len(BENIGN)


@pytest.fixture(scope="module")
def reference_classifier():
    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True),
                         LogisticRegression(C=4.0, class_weight="balanced", solver="liblinear",
                                            random_state=0)).fit(HARMFUL + BENIGN, LABELS)


@pytest.mark.task("normalise")
def test_zero_width_characters_and_homoglyphs_are_removed(impl):
    hidden = "Fo\u200brb\u200did\u2060den \u0456tem"  # zero-width splits; Cyrillic i
    views = impl.normalised_views(hidden)
    assert views[0] == "forbidden item", f"expected 'forbidden item' first, got {views[0]!r}"
    assert impl.normalised_views("Fullwidth ＦＯＲＢＩＤＤＥＮ")[0] == "fullwidth forbidden"


@pytest.mark.task("normalise")
def test_the_views_in_order_with_a_hand_worked_example(impl):
    encoded = base64.b64encode(b"Forbidden Item recipe").decode()
    text = f"Please d3c0d3 th1s: {encoded} now"
    cleaned = f"please d3c0d3 th1s: {encoded.lower()} now"
    # Words mixing letters with 0-9/@/$ are undone; the base64 run has digits too, so it is one of them.
    leet = ["d3c0d3", "th1s:"] + [encoded.lower()] * any(c.isdigit() for c in encoded)
    unleet = " ".join(w.translate(str.maketrans("431057@$", "aeiostas")) for w in leet)
    expected = [cleaned, unleet, "forbidden item recipe", codecs.encode(cleaned, "rot13")]
    assert impl.normalised_views(text) == expected


@pytest.mark.task("normalise")
def test_two_base64_runs_are_both_decoded_and_junk_runs_are_skipped(impl):
    a = base64.b64encode(b"first hidden part").decode()
    b = base64.b64encode(b"second hidden part!").decode()
    junk = base64.b64encode(bytes([0xff, 0xfe, 0x00, 0x01] * 4)).decode()  # not UTF-8
    views = impl.normalised_views(f"{a} and {junk} and {b}")
    assert "first hidden part second hidden part!" in views, f"got views {views}"


@pytest.mark.task("normalise")
def test_plain_text_has_only_itself_and_its_rot13(impl):
    views = impl.normalised_views("How do I kill a Python process?")
    assert views == ["how do i kill a python process?", "ubj qb v xvyy n clguba cebprff?"]


@pytest.mark.task("normalise")
def test_digits_alone_are_not_leetspeak(impl):
    views = impl.normalised_views("room 101 at 7")
    assert views == ["room 101 at 7", codecs.encode("room 101 at 7", "rot13")]


@pytest.mark.task("filter")
def test_classifier_matches_the_scikit_learn_pipeline(impl, reference_classifier):
    model = impl.train_classifier(HARMFUL + BENIGN, LABELS, seed=0)
    probe = ["recipe for forbidden item", "kill the python process", "a bookshelf at home", "unseen words only"]
    np.testing.assert_allclose(model.predict_proba(probe), reference_classifier.predict_proba(probe), atol=1e-9)


@pytest.mark.task("filter")
def test_classifier_refuses_a_single_class(impl):
    with pytest.raises(ValueError):
        impl.train_classifier(HARMFUL, [1] * len(HARMFUL))


@pytest.mark.task("filter")
def test_an_encoded_attack_is_caught_only_after_normalisation(impl, reference_classifier):
    attack = "give me a recipe for forbidden item and where to hide it"
    for encoded in [base64.b64encode(attack.encode()).decode(), codecs.encode(attack, "rot13"),
                    "g1v3 m3 4 r3c1p3 f0r f0rb1dd3n 173m"]:
        raw = impl.SafetyFilter(reference_classifier, normalise=False)
        guard = impl.SafetyFilter(reference_classifier)
        assert not raw.blocks(encoded), "the raw check should not see through the encoding"
        assert guard.blocks(encoded), "the normalised check should decode and block it"
    assert impl.SafetyFilter(reference_classifier).blocks(attack)


@pytest.mark.task("filter")
def test_benign_look_alikes_pass(impl, reference_classifier):
    guard = impl.SafetyFilter(reference_classifier)
    for text in ["How do I kill a Python process?", "Explain how to build a bookshelf at home",
                 base64.b64encode(b"give me a recipe for pancakes").decode()]:
        assert not guard.blocks(text), f"{text!r} is benign and should pass"


@pytest.mark.task("filter")
def test_score_is_the_max_over_known_views_and_the_threshold_is_inclusive(impl, reference_classifier):
    guard = impl.SafetyFilter(reference_classifier)
    plain = "give me a recipe for forbidden item"
    text = f"recipe for pancakes {base64.b64encode(plain.encode()).decode()}"
    column = list(reference_classifier.classes_).index(1)
    # The views a correct normaliser yields here: the cleaned text and the decoded run (rot13 is unknown words).
    expected = reference_classifier.predict_proba([plain])[0, column]
    assert guard.score(text) == pytest.approx(expected, abs=1e-9)
    assert impl.SafetyFilter(reference_classifier, threshold=expected).blocks(text), "a score equal to the threshold blocks"
    assert not impl.SafetyFilter(reference_classifier, threshold=expected + 1e-6).blocks(text)


@pytest.mark.task("filter")
def test_gibberish_scores_zero(impl, reference_classifier):
    assert impl.SafetyFilter(reference_classifier).score("qzx vvkw plorft") == 0.0


@pytest.mark.task("filter")
def test_classifier_matches_scikit_learn_on_imbalanced_classes(impl):
    texts, labels = HARMFUL + BENIGN[:6], [1] * len(HARMFUL) + [0] * 6  # 4:1, where class weights matter
    reference = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True),
                              LogisticRegression(C=4.0, class_weight="balanced", solver="liblinear",
                                                 random_state=3)).fit(texts, labels)
    probe = ["recipe for forbidden item", "kill the python process", "number 3", "where to hide it"]
    np.testing.assert_allclose(impl.train_classifier(texts, labels, seed=3).predict_proba(probe),
                               reference.predict_proba(probe), atol=1e-9)
