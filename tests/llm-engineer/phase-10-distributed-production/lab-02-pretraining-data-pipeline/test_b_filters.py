"""Gopher and C4 rules and PII scrubbing on hand-built documents whose fate is worked out by hand, at the exact
boundaries the rules name (Rae et al. 2021, Gopher, appendix A; Raffel et al. 2020, C4, section 2.2)."""
import random

import pytest

# 100 distinct-ish words of plain prose that passes every Gopher rule
CLEAN = ("The old lighthouse keeper climbed the stairs every night to light the lamp for the ships that passed "
         "along the rocky coast. He kept a careful log of the weather and of every vessel he saw, and in the "
         "winter he repaired the nets of the fishermen who lived in the village below the cliff. His daughter "
         "brought him bread and letters from the town, and together they watched the storms roll in from the "
         "west while the gulls circled over the harbour. Years later she wrote a book about those evenings, "
         "and the keeper's log became a treasure of the local museum where visitors still read it today.")
CLEAN_WORDS = CLEAN.split()


def doc_of(words):
    return " ".join(words)


# --------------------------------------------------------------------------- gopher

@pytest.mark.task("gopher")
def test_top_ngram_char_fraction_by_hand(impl):
    words = "a b a b a b c".split()
    # bigrams: (a,b) x3, (b,a) x2, (b,c) x1 -> top (a,b): 2 chars x 3 = 6 of 7 characters
    assert impl.top_ngram_char_fraction(words, 2) == pytest.approx(6 / 7)
    words = "to be or not to be that is".split()
    # bigram (to, be) twice: 4 chars x 2 = 8 of 19 characters
    assert impl.top_ngram_char_fraction(words, 2) == pytest.approx(8 / 19)
    assert impl.top_ngram_char_fraction(["alone"], 2) == 0.0


@pytest.mark.task("gopher")
def test_clean_prose_passes(impl):
    assert len(CLEAN_WORDS) >= 100
    assert impl.gopher_reason(CLEAN) is None, f"clean prose was dropped for {impl.gopher_reason(CLEAN)!r}"


@pytest.mark.task("gopher")
def test_word_count_bounds(impl):
    assert impl.gopher_reason(doc_of(CLEAN_WORDS[:50])) is None, "exactly 50 words is enough"
    assert impl.gopher_reason(doc_of(CLEAN_WORDS[:49])) == "word_count"
    huge = doc_of((CLEAN_WORDS * 1001)[:100_001])
    assert impl.gopher_reason(huge) == "word_count", "more than 100,000 words is dropped"


def three_letter_doc(n=60, seed=0):
    rng = random.Random(seed)
    return [rng.choice(["the", "and", "cat", "dog", "sat", "ran", "hid", "fox", "owl", "bee"]) for _ in range(n)]


@pytest.mark.task("gopher")
def test_mean_word_length_bounds(impl):
    words = three_letter_doc()
    assert impl.gopher_reason(doc_of(words)) is None, "a mean of exactly 3.0 characters passes"
    shorter = ["to"] + words[1:]
    assert impl.gopher_reason(doc_of(shorter)) == "mean_word_length", "a mean just under 3 is dropped"
    longer = ["internationalization", "institutionalized", "the", "and"] * 15   # (20+17+3+3)/4 = 10.75
    assert impl.gopher_reason(doc_of(longer)) == "mean_word_length", "a mean above 10 is dropped"


@pytest.mark.task("gopher")
def test_symbol_to_word_ratio_counts_hashes_and_ellipses_per_word(impl):
    words = list(CLEAN_WORDS[:100])
    tagged = [("#" + w if i % 10 == 0 else w) for i, w in enumerate(words)]           # 10 of 100 words
    assert impl.gopher_reason(doc_of(tagged)) is None, "10 '#' in 100 words is a ratio of exactly 0.1: kept"
    tagged[5] = "#" + tagged[5]
    assert impl.gopher_reason(doc_of(tagged)) == "symbol_ratio", "11 '#' in 100 words is above 0.1"
    dots = [(w + "..." if i % 9 == 0 else w) for i, w in enumerate(words)]               # 12 ellipses
    assert impl.gopher_reason(doc_of(dots)) == "symbol_ratio", "ellipses count as symbols too"
    unicode_dots = [(w + "…" if i % 9 == 0 else w) for i, w in enumerate(words)]
    assert impl.gopher_reason(doc_of(unicode_dots)) == "symbol_ratio", "so does the one-character ellipsis"


def lines_doc(n_lines, transform):
    words = CLEAN_WORDS[:100]
    size = len(words) // n_lines
    return "\n".join(transform(i, " ".join(words[i * size:(i + 1) * size])) for i in range(n_lines))


@pytest.mark.task("gopher")
def test_bullet_and_ellipsis_line_fractions(impl):
    nine = lines_doc(10, lambda i, line: ("- " + line) if i < 9 else line)
    assert impl.gopher_reason(nine) is None, "9 bullet lines of 10 is exactly 0.9: kept"
    ten = lines_doc(10, lambda i, line: "  • " + line)
    assert impl.gopher_reason(ten) == "bullet_lines", "all lines bulleted (after leading spaces): dropped"
    three = lines_doc(10, lambda i, line: (line + " …") if i < 3 else line)
    assert impl.gopher_reason(three) is None, "3 lines of 10 ending in an ellipsis is exactly 0.3: kept"
    four = lines_doc(10, lambda i, line: (line + " ...  ") if i < 4 else line)
    assert impl.gopher_reason(four) == "ellipsis_lines", "4 of 10 lines end with an ellipsis: dropped"
    blank = lines_doc(10, lambda i, line: (line + " …\n") if i < 4 else line)
    assert impl.gopher_reason(blank) == "ellipsis_lines", "empty lines are not lines: still 4 of 10, not 4 of 14"


@pytest.mark.task("gopher")
def test_alphabetic_word_fraction(impl):
    words = list(CLEAN_WORDS[:100])
    numbers = [("1984" if i % 5 == 0 else w) for i, w in enumerate(words)]           # 20 of 100 have no letter
    assert impl.gopher_reason(doc_of(numbers)) is None, "80% alphabetic words is exactly the bound: kept"
    numbers[1] = "42"
    assert impl.gopher_reason(doc_of(numbers)) == "alpha_words", "79% alphabetic words: dropped"
    mixed = [("v2" if i % 4 == 0 else w) for i, w in enumerate(words)]
    assert impl.gopher_reason(doc_of(mixed)) is None, "a word with any letter counts as alphabetic"


@pytest.mark.task("gopher")
def test_stop_words_need_two_distinct_after_cleaning(impl):
    words = [w for w in three_letter_doc(80, seed=1) if w not in ("the", "and")]
    only_one = ["the"] * 3 + words
    assert impl.gopher_reason(doc_of(only_one)) == "stop_words", "one distinct stop word is not enough"
    two = ["The,"] + words + ["and."]
    assert impl.gopher_reason(doc_of(two)) is None, "'The,' and 'and.' count once lower-cased and stripped"


@pytest.mark.task("gopher")
def test_repetition_and_rule_order(impl):
    spam = doc_of(["buy cheap watches and buy cheap phones with free delivery"] * 12)
    assert impl.gopher_reason(spam) == "top_2gram"
    base = CLEAN_WORDS[:100]
    chars = sum(len(w) for w in base)
    five = base + ["harbour", "lantern", "keepers"] * 5
    # top trigram "harbour lantern keepers" x5 = 105 characters; top bigram "harbour lantern" x5 = 70
    assert impl.top_ngram_char_fraction(five, 3) == pytest.approx(105 / (chars + 105))
    assert impl.top_ngram_char_fraction(five, 2) == pytest.approx(70 / (chars + 105))
    assert impl.gopher_reason(doc_of(five)) == "top_3gram", "0.19 of characters in one trigram is above 0.18"
    four = base + ["harbour", "lantern", "keepers"] * 4
    # top 4-gram "harbour lantern keepers harbour" x3 = 84 characters: 0.161 > 0.16; the trigram x4 is 0.161 <= 0.18
    assert impl.gopher_reason(doc_of(four)) == "top_4gram"
    short_and_hashy = "#a #b #c #d"
    assert impl.gopher_reason(short_and_hashy) == "word_count", "the first failing rule in order is reported"


# --------------------------------------------------------------------------- c4

SENTENCES = ["The ferry leaves the harbour at seven every morning.", "It carries cars, bikes and people.",
             "In summer a second boat runs at noon!", "Do you need a ticket for the dog?",
             "She said: \"take the early one.\"", "Tickets are sold on board."]


@pytest.mark.task("c4-filter")
def test_boilerplate_lines_go_and_sentences_stay(impl):
    page = "\n".join(["Home | About | Contact", SENTENCES[0], "Please enable JavaScript to see the map.",
                      SENTENCES[1], "This site uses cookies, see our Cookie Policy.", "Thanks!", "Great job!",
                      "   " + SENTENCES[2] + "   ", SENTENCES[3], "Read more", SENTENCES[4], SENTENCES[5]])
    cleaned, reason = impl.c4_clean(page)
    assert reason == "ok"
    assert cleaned == "\n".join(SENTENCES), \
        f"expected only the six sentence lines (stripped), got:\n{cleaned}"


@pytest.mark.task("c4-filter")
def test_page_level_rules(impl):
    body = "\n".join(SENTENCES)
    assert impl.c4_clean(body + "\nLOREM IPSUM dolor sit amet is here.") == (None, "lorem_ipsum")
    assert impl.c4_clean("function f() { return 1; }\n" + body) == (None, "curly_bracket")
    assert impl.c4_clean("Lorem ipsum { }") == (None, "lorem_ipsum"), "lorem ipsum is checked before braces"


@pytest.mark.task("c4-filter")
def test_five_sentences_needed_after_cleaning(impl):
    five = "\n".join(SENTENCES[:5])
    assert impl.c4_clean(five)[1] == "ok", "exactly five sentence ends is enough"
    four = "\n".join(SENTENCES[:4] + ["Menu item one two three", "Cookie policy. Cookie policy. Cookie policy."])
    assert impl.c4_clean(four) == (None, "too_few_sentences"), \
        "sentences in removed lines do not count: only four remain"
    packed = "One. Two words here. Three is here! Four? Five, surely."
    assert impl.c4_clean(packed)[1] == "ok", "sentences are counted inside lines, not as lines"


@pytest.mark.task("c4-filter")
def test_short_lines_and_closing_quotes(impl):
    lines = ["Two words.", "Three words here.", "He said \"go now.\"", "A line ending in a quote mark'"]
    cleaned, _ = impl.c4_clean("\n".join(lines + SENTENCES))
    kept = cleaned.split("\n")[:3]
    assert kept == ["Three words here.", "He said \"go now.\"", "A line ending in a quote mark'"], \
        f"lines need 3+ words and may end with a closing quote; got {kept}"


# --------------------------------------------------------------------------- pii

PII_TEXT = ("Mail ada.lovelace@example.org or ops-team+alerts@corp.example.com today.\n"
            "Call (555) 013-2468, 555-010-7788 or +1 555 010 7788 after nine.\n"
            "Server 10.20.30.40, gateway 192.168.0.1, broadcast 255.255.255.255.\n"
            "Not personal: 999.1.1.1, 256.1.1.1, release 1.2.3, v2.10.3.4, 2024-01-15, order 12345678901.")
PII_WANT = ("Mail <EMAIL> or <EMAIL> today.\n"
            "Call <PHONE>, <PHONE> or <PHONE> after nine.\n"
            "Server <IP>, gateway <IP>, broadcast <IP>.\n"
            "Not personal: 999.1.1.1, 256.1.1.1, release 1.2.3, v2.10.3.4, 2024-01-15, order 12345678901.")


@pytest.mark.task("pii-scrub")
def test_scrubbed_text_by_hand(impl):
    text, counts = impl.scrub_pii(PII_TEXT)
    assert text == PII_WANT, f"expected:\n{PII_WANT}\ngot:\n{text}"


@pytest.mark.task("pii-scrub")
def test_counts_per_kind(impl):
    _, counts = impl.scrub_pii(PII_TEXT)
    assert dict(counts) == {"email": 2, "phone": 3, "ip": 3}, f"expected 2 emails, 3 phones, 3 IPs, got {counts}"
    clean, none = impl.scrub_pii("Nothing personal here.")
    assert clean == "Nothing personal here." and sum(none.values()) == 0
