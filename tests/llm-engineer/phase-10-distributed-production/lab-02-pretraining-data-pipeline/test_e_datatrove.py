"""The filters as datatrove blocks: datatrove's own BaseFilter.run decides what survives, and its
LocalPipelineExecutor runs several tasks over the archive's files; the kept documents must be exactly the
corpus's planted ground truth, with datatrove's drop statistics per reason."""
import json
import os
from pathlib import Path

import pytest
from datatrove.data import Document


def run_block(block, texts):
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    return list(block.run(iter(docs)))


@pytest.mark.task("datatrove-blocks")
def test_language_block_keeps_english_and_labels_metadata(impl):
    kept = run_block(impl.LanguageBlock(), [impl.FRENCH, "The harbour was quiet and the boats were all home.",
                                            impl.GERMAN])
    assert [d.id for d in kept] == ["1"], f"only the English document survives datatrove's filter, got {kept}"
    assert kept[0].metadata["language"] == "en" and kept[0].metadata["language_score"] > 0.9
    block = impl.LanguageBlock()
    assert block.filter(Document(text=impl.SPANISH, id="x")) == (False, "language"), \
        "a dropped document returns (False, reason) so datatrove counts the reason"
    strict = impl.LanguageBlock(threshold=0.99)
    mixed = "Bonjour mon ami, comment ça va? I am fine thanks and you"
    assert not run_block(strict, [mixed]), "the block applies its threshold"


@pytest.mark.task("datatrove-blocks")
def test_gopher_block_drops_with_the_rule_as_reason(impl):
    stub = "Page not found. Return to the home page."
    block = impl.GopherBlock()
    kept = run_block(block, [stub])
    assert kept == [], "a 9-word stub must not survive the Gopher block"
    assert block.stats["dropped_word_count"].total == 1, \
        f"datatrove should count the drop reason 'word_count', stats are {dict(block.stats)}"


@pytest.mark.task("datatrove-blocks")
def test_c4_block_rewrites_the_text(impl):
    lines = ["Home | About | Contact", "The ferry leaves the harbour at seven every morning.",
             "Please enable JavaScript to see the map.", "It carries cars, bikes and people.",
             "In summer a second boat runs at noon!", "Do you need a ticket for the dog?",
             "Tickets are sold on board."]
    kept = run_block(impl.C4Block(), ["\n".join(lines), "{ code } " + "\n".join(lines)])
    assert len(kept) == 1, "the page with a curly bracket is dropped"
    assert kept[0].text == "\n".join(lines[1:2] + lines[3:]), \
        f"the surviving document carries the cleaned text, got:\n{kept[0].text}"


@pytest.mark.task("datatrove-blocks")
def test_pii_block_scrubs_and_counts(impl):
    block = impl.PIIBlock()
    out = run_block(block, ["Mail ada@example.org or call (555) 013-2468.", "Nothing here."])
    assert [d.text for d in out] == ["Mail <EMAIL> or call <PHONE>.", "Nothing here."]
    assert block.stats["pii_email"].total == 1 and block.stats["pii_phone"].total == 1, \
        f"datatrove stats should count pii_email and pii_phone, got {dict(block.stats)}"


@pytest.mark.task("datatrove-blocks")
def test_executor_with_several_tasks_keeps_the_ground_truth(impl, tmp_path, capfd):
    corpus = impl.build_corpus()
    impl.write_warc(corpus, tmp_path / "warc", n_files=4)
    cwd = os.getcwd()
    result = impl.run_datatrove(tmp_path / "warc", tmp_path / "work", tasks=2, workers=1, shard_tokens=2048)
    assert os.getcwd() == cwd
    out, err = capfd.readouterr()
    assert "INFO" not in err and "INFO" not in out, "datatrove's task logs should not reach the console"
    assert (tmp_path / "work/logs/filter/completions/00000").exists() and \
           (tmp_path / "work/logs/filter/completions/00001").exists(), "two filter tasks ran to completion"
    id_of = {i: f"<urn:uuid:00000000-0000-4000-8000-{i:012d}>" for i in range(len(corpus))}
    want = sorted(id_of[i] for i, d in enumerate(corpus) if d["expect"] == "keep")
    assert sorted(result["kept_ids"]) == want, \
        f"datatrove kept {len(result['kept_ids'])} documents, the ground truth keeps {len(want)}"
    merged = {}
    for step in result["stats"]["filter"]:
        for key, value in step.get("stats", {}).items():
            if key.startswith("dropped_"):
                merged[key] = merged.get(key, 0) + (value["total"] if isinstance(value, dict) else value)
    planted = {}
    for d in corpus:
        stage, _, reason = d["expect"].partition(":")
        if stage in ("gopher", "c4"):
            planted[f"dropped_{reason}"] = planted.get(f"dropped_{reason}", 0) + 1
        elif stage == "language":
            planted["dropped_language"] = planted.get("dropped_language", 0) + 1
    assert merged == planted, f"datatrove's drop reasons {merged} differ from the planted ones {planted}"
    index = json.loads((Path(result["shards_dir"]) / "index.json").read_text())
    assert index["complete"] and index["docs"] == len(want)
