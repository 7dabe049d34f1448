"""Lab 01, judging answers before and after SFT: the rule-based judge on hand-worked replies, its symmetry, and the
win-rate summary against scipy's sign test."""
import pytest
from scipy.stats import binomtest

SIDES = ("How many sides does a pentagon have?", "A pentagon has five sides.")
SPAIN = ("What is the capital of Spain?", "The capital of Spain is Madrid.")
USB = ("What does USB stand for?", "USB stands for Universal Serial Bus.")


@pytest.mark.task("judged-win-rate")
def test_answer_words_are_what_the_question_does_not_give_away(impl):
    assert impl.answer_words(*SIDES) == {"5"}, "number words count as digits, question words and filler drop out"
    assert impl.answer_words(*SPAIN) == {"madrid"}
    assert impl.answer_words(*USB) == {"stands", "universal", "serial", "bus"}
    assert impl.answer_words("What is 6 times 9?", "6 times 9 is 54.") == {"54"}


@pytest.mark.task("judged-win-rate")
@pytest.mark.parametrize("reply, expected", [
    ("A pentagon has five sides.", 3.0),                    # the key fact, one concise sentence
    ("A pentagon has 5 sides.", 3.0),                       # digits and number words are the same fact
    ("A pentagon has six sides.", 1.0),                     # right form, wrong fact
    ("Five. A pentagon is a polygon.", 2.0),                # right fact, two sentences
    ("A pentagon has five sides and many people enjoy drawing them on paper", 2.0),  # 13 words > 2 x 5
    ("", 0.0),
])
def test_judge_score_on_hand_worked_replies(impl, reply, expected):
    assert impl.judge_score(*SIDES, reply) == pytest.approx(expected)


@pytest.mark.task("judged-win-rate")
def test_judge_score_gives_partial_credit(impl):
    assert impl.judge_score(*USB, "It is the Universal Serial Bus.") == pytest.approx(2 * 3 / 4 + 1)
    assert impl.judge_score("Say hello.", "Hello.", "Hello.") == pytest.approx(3.0), \
        "no answer words left: recall counts as complete"


@pytest.mark.task("judged-win-rate")
def test_judge_pair_prefers_the_correct_concise_reply_and_is_symmetric(impl):
    good, rambling = "The capital of Spain is Madrid.", ("El Salvador, also known as La Espana de America, is the "
                                                          "capital of the Spanish-speaking region of the Americas.")
    assert impl.judge_pair(*SPAIN, good, rambling) == 1
    assert impl.judge_pair(*SPAIN, rambling, good) == -1
    assert impl.judge_pair(*SPAIN, good, "Madrid is the capital of Spain.") == 0, "two correct sentences tie"
    wrong_but_tidy, right_but_long = "A pentagon has six sides.", "Five. It is a polygon with five sides."
    assert impl.judge_pair(*SIDES, right_but_long, wrong_but_tidy) == 1, "the fact outweighs the format"


@pytest.mark.task("judged-win-rate")
def test_win_rate_matches_a_hand_count_and_scipys_sign_test(impl):
    verdicts = [1, 1, 1, 0, -1, 1, 0, 1, 1, 1]
    summary = impl.win_rate(verdicts)
    assert (summary["wins"], summary["losses"], summary["ties"]) == (7, 1, 2)
    assert summary["rate"] == pytest.approx((7 + 1) / 10)
    assert summary["p_value"] == pytest.approx(binomtest(7, 8, 0.5).pvalue)
    assert impl.win_rate([0, 0])["p_value"] == 1.0 and impl.win_rate([0, 0])["rate"] == 0.5
    assert impl.win_rate([-1])["rate"] == 0.0
    with pytest.raises(ValueError):
        impl.win_rate([])
