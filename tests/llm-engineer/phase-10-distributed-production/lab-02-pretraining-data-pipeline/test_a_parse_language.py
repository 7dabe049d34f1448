"""Parsing WET records (archives written here with warcio's own writer) and language ID (checked against
py3langid's normalized-probability mode, a separate code path of the same packaged model)."""
import io

import pytest
from py3langid.langid import MODEL_FILE, LanguageIdentifier
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

ENGLISH = ("The river rose after three days of rain, and the farmers moved their animals to the higher fields. "
           "By the evening the bridge was closed, and the school sent the children home early with a note.")
MIXED = "Bonjour mon ami, comment ça va? I am fine thanks and you"


def write_archive(path, gzip: bool):
    """warcinfo, an HTTP response, a metadata record and three conversion records (one with a bad byte)."""
    pages = [("https://a.example/1", "First page. Plain ASCII text.".encode()),
             ("https://a.example/2", "Café au lait, naïve résumé.".encode("utf-8")),
             ("https://a.example/3", b"Broken \xff byte in the middle.")]
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=gzip)
        w.write_record(w.create_warcinfo_record(path.name, {"software": "test"}))
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.0")
        w.write_record(w.create_warc_record("https://a.example/raw", "response",
                                            payload=io.BytesIO(b"<html>raw</html>"), http_headers=http))
        for k, (url, payload) in enumerate(pages):
            if k == 1:
                w.write_record(w.create_warc_record("https://a.example/meta", "metadata",
                                                    payload=io.BytesIO(b"fetchTimeMs: 12"),
                                                    warc_content_type="application/warc-fields"))
            w.write_record(w.create_warc_record(url, "conversion", payload=io.BytesIO(payload),
                                                warc_headers_dict={"WARC-Record-ID": f"<urn:uuid:{k}>",
                                                                   "Content-Type": "text/plain"}))
    return pages


# --------------------------------------------------------------------------- parse-warc

@pytest.mark.task("parse-warc")
@pytest.mark.parametrize("gzip", [True, False], ids=["warc.gz", "plain-warc"])
def test_only_conversion_records_come_out_in_order(impl, tmp_path, gzip):
    path = tmp_path / ("crawl.warc.gz" if gzip else "crawl.warc")
    pages = write_archive(path, gzip)
    records = list(impl.iter_wet_records(path))
    urls = [r["url"] for r in records]
    assert urls == [u for u, _ in pages], \
        f"expected the 3 conversion records' URLs {[u for u, _ in pages]}, got {urls} (warcinfo, response and " \
        f"metadata records are not pages)"
    assert [r["id"] for r in records] == ["<urn:uuid:0>", "<urn:uuid:1>", "<urn:uuid:2>"], \
        f"ids should be the WARC-Record-ID headers, got {[r['id'] for r in records]}"


@pytest.mark.task("parse-warc")
def test_text_is_utf8_and_bad_bytes_become_replacement_chars(impl, tmp_path):
    path = tmp_path / "crawl.warc.gz"
    write_archive(path, gzip=True)
    texts = [r["text"] for r in impl.iter_wet_records(path)]
    assert texts[1] == "Café au lait, naïve résumé.", f"UTF-8 text came back as {texts[1]!r}"
    assert texts[2] == "Broken \ufffd byte in the middle.", \
        f"an invalid byte should become U+FFFD (decode with errors='replace'), got {texts[2]!r}"


@pytest.mark.task("parse-warc")
def test_records_stream_lazily(impl, tmp_path):
    path = tmp_path / "crawl.warc.gz"
    write_archive(path, gzip=True)
    stream = impl.iter_wet_records(path)
    assert not isinstance(stream, (list, tuple)), "iter_wet_records should be a generator (stream the archive)"
    assert next(iter(stream))["url"] == "https://a.example/1"


# --------------------------------------------------------------------------- language-id

@pytest.fixture(scope="module")
def lib():
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def lib_on_sample(lib, text):
    return lib.classify(text.replace("\n", " ")[:1000])


@pytest.mark.task("language-id")
def test_probabilities_match_py3langid_normalized_mode(impl, lib):
    texts = [ENGLISH, MIXED, impl.FRENCH, impl.GERMAN, impl.SPANISH, "Hello there my friend"]
    for text in texts:
        lang, prob = impl.detect_language(text)
        want_lang, want_prob = lib_on_sample(lib, text)
        assert lang == want_lang and prob == pytest.approx(want_prob, abs=1e-4), \
            f"on {text[:30]!r}: expected ({want_lang}, {want_prob:.5f}), got ({lang}, {prob:.5f})"
    assert impl.detect_language(MIXED)[1] < 0.9, "a mixed French/English line should not be near-certain"


@pytest.mark.task("language-id")
def test_only_a_flattened_1000_character_sample_is_classified(impl, lib):
    # one English word per line (about 700 characters), then a long French tail: measured with py3langid 0.4.0,
    # the flattened first 1000 characters read English (0.74), the same with newlines or the whole text French
    sentence = "The river rose after three days of rain, and the farmers moved their animals to the higher fields."
    text = "\n".join((sentence + " ").split() * 7) + "\n" + impl.FRENCH * 6
    want_lang, want_prob = lib_on_sample(lib, text)
    lang, prob = impl.detect_language(text)
    assert (lang, round(prob, 4)) == (want_lang, round(want_prob, 4)), \
        f"expected ({want_lang}, {want_prob:.4f}) for the first 1000 characters with newlines as spaces, " \
        f"got ({lang}, {prob:.4f})"
    assert want_lang == "en", "test data check: the flattened sample reads as English"
    assert lib.classify(text.replace("\n", " "))[0] == "fr", "test data check: the whole text reads as French"
    assert lib.classify(text[:1000])[0] == "fr", "test data check: with its newlines the sample reads as French"


@pytest.mark.task("language-id")
def test_is_english_keeps_the_threshold_itself(impl):
    lang, prob = impl.detect_language(MIXED)
    assert lang == "en" and 0.6 < prob < 0.75, f"test data check: {lang} {prob}"
    assert impl.is_english(MIXED, threshold=prob), "a probability exactly at the threshold is kept (>=)"
    assert not impl.is_english(MIXED, threshold=prob + 1e-6), "just above the probability must drop"
    assert impl.is_english(MIXED), f"at the default threshold 0.65 an English probability of {prob:.3f} is kept"
    assert not impl.is_english(impl.FRENCH, threshold=0.0), "French is not English at any threshold"
    assert impl.is_english(ENGLISH), "plain English prose passes the default threshold"
