"""Encoding, decoding, special tokens and save/load of the lab's Tokenizer, on tiny hand-built merges and on a
tokenizer trained from Shakespeare."""
import json
import os

import pytest
from hypothesis import given, settings, strategies as st

from labkit import assets

a, b, c, h, i_ = (ord(x) for x in "abchi")


# ---------------------------------------------------------------- encode

@pytest.mark.task("encode")
def test_encode_with_hand_merges(impl):
    tok = impl.Tokenizer({(h, i_): 256})
    got = tok.encode_ordinary("hi hi")
    assert got == [256, 32, 256], f"'hi hi' with the single merge (h, i): expected [256, 32, 256], got {got}"


@pytest.mark.task("encode")
def test_encode_applies_lowest_rank_first(impl):
    # (b, c) was learned first (id 256), (a, b) later (257): "abc" must become a + bc, not ab + c.
    tok = impl.Tokenizer({(b, c): 256, (a, b): 257, (a, 256): 258})
    assert tok.encode_ordinary("abc") == [258], "'abc': expected bc first, then a+bc = [258]"
    tok = impl.Tokenizer({(b, c): 256, (a, b): 257})
    got = tok.encode_ordinary("abc")
    assert got == [a, 256], f"'abc' with merges bc (rank 256) and ab (rank 257): expected [{a}, 256], got {got}"
    got = tok.encode_ordinary("abab")
    assert got == [257, 257], f"'abab': expected both (a, b) merged, [257, 257], got {got}"


@pytest.mark.task("encode")
def test_encode_uses_byte_ids_and_caches_pre_tokens(impl):
    # A permuted byte table (GPT-2 numbers bytes in its own order): byte v has id 255 - v.
    tok = impl.Tokenizer({(255 - h, 255 - i_): 256}, byte_ids=[255 - v for v in range(256)])
    got = tok.encode_ordinary("hi!")
    assert got == [256, 255 - ord("!")], f"'hi!' with byte id 255 - byte: expected [256, {255 - ord('!')}], got {got}"
    again = tok.encode_ordinary("hi!")
    assert again == got, "encoding the same text twice gave different ids"
    assert "hi" in tok.cache, "the pre-token 'hi' should be in tok.cache after encoding it"


# ---------------------------------------------------------------- decode

@pytest.mark.task("decode")
def test_decode_hand_cases(impl):
    tok = impl.Tokenizer({(h, i_): 256}, special_tokens={"<|end|>": 300})
    assert tok.decode([256, 32, 256, 300]) == "hi hi<|end|>", "decode([256, 32, 256, 300]) should be 'hi hi<|end|>'"
    assert tok.decode([]) == "", "decode([]) should be ''"
    assert tok.decode([0xE4]) == b"\xe4".decode("utf-8", errors="replace"), \
        "a lone UTF-8 lead byte should decode to U+FFFD"
    assert tok.decode_bytes([0xE4, 0xBD]) == b"\xe4\xbd", "decode_bytes should give the raw bytes back"
    with pytest.raises(ValueError):
        tok.decode([999])


@pytest.mark.task("decode")
@settings(max_examples=40, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_round_trip_any_text(impl, trained, text):
    ids = trained.encode_ordinary(text)
    back = trained.decode(ids)
    assert back == text, f"decode(encode({text!r})) gave {back!r}"


# ---------------------------------------------------------------- special tokens

@pytest.mark.task("special-tokens")
def test_special_tokens_allowed_refused_and_ordinary(impl, trained):
    text = "To be<|endoftext|>or not<|pad|>"
    ids = trained.encode(text, allowed_special="all")
    eot, pad = trained.special_tokens["<|endoftext|>"], trained.special_tokens["<|pad|>"]
    assert ids.count(eot) == 1 and ids[-1] == pad, f"with allowed_special='all' expected ids {eot} and {pad}, got {ids}"
    assert ids == trained.encode_ordinary("To be") + [eot] + trained.encode_ordinary("or not") + [pad], \
        "the text between special tokens should be encoded on its own"
    only_eot = trained.encode(text, allowed_special={"<|endoftext|>"}, disallowed_special=())
    assert eot in only_eot and pad not in only_eot, "only <|endoftext|> was allowed; <|pad|> should be plain text"
    with pytest.raises(ValueError):
        trained.encode(text)  # default: every special token is disallowed
    with pytest.raises(ValueError):
        trained.encode(text, allowed_special={"<|endoftext|>"})  # <|pad|> is still disallowed
    plain = trained.encode(text, disallowed_special=())
    assert plain == trained.encode_ordinary(text), "disallowed_special=() should encode specials as ordinary text"
    assert trained.decode(ids) == text, "special token ids should decode to their text"
    with pytest.raises(ValueError):
        trained.encode("x", allowed_special={"<|nope|>"})


# ---------------------------------------------------------------- save / load

@pytest.mark.task("save-load")
def test_save_load_round_trip(impl, trained, tmp_path):
    path = tmp_path / "sub" / "tok.json"
    trained.save(path)
    trained.save(path)  # overwriting an existing file works too
    leftovers = sorted(p.name for p in path.parent.iterdir() if p.name != "tok.json")
    assert leftovers == [], f"save left temporary files behind: {leftovers}"
    loaded = impl.Tokenizer.load(path)
    assert loaded.merges == trained.merges, "merges changed through save/load"
    assert loaded.special_tokens == trained.special_tokens, "special tokens changed through save/load"
    assert loaded.byte_ids == trained.byte_ids, "byte ids changed through save/load"
    text = assets.shakespeare(3_000) + "<|pad|>"
    assert loaded.encode(text, allowed_special="all") == trained.encode(text, allowed_special="all"), \
        "the loaded tokenizer encodes differently"


@pytest.mark.task("save-load")
def test_crash_while_writing_keeps_the_old_file(impl, trained, tmp_path, monkeypatch):
    path = trained.save(tmp_path / "tok.json")
    before = path.read_bytes()
    real_dump, real_dumps = json.dump, json.dumps

    def crashing_dump(obj, handle, *args, **kwargs):
        handle.write('{"format": "labkit-bpe/1", "mer')  # the first bytes, then die as a killed process would
        raise RuntimeError("simulated crash while writing")

    def crashing_dumps(obj, *args, **kwargs):
        raise RuntimeError("simulated crash while writing")

    monkeypatch.setattr(json, "dump", crashing_dump)
    monkeypatch.setattr(json, "dumps", crashing_dumps)  # the same crash for a writer that serialises first
    with pytest.raises(RuntimeError, match="simulated crash"):
        trained.save(path)
    monkeypatch.setattr(json, "dump", real_dump)
    monkeypatch.setattr(json, "dumps", real_dumps)
    assert path.read_bytes() == before, "a crash while saving damaged the tokenizer file that was already there"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok.json"], "the half-written temp file was left behind"


@pytest.mark.task("save-load")
def test_temp_file_is_renamed_from_the_target_folder(impl, trained, tmp_path, monkeypatch):
    # os.replace is only an atomic rename within one filesystem: the temp file must sit beside the target
    renames, real_replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renames.append((src, dst)), real_replace(src, dst))[1])
    path = tmp_path / "deep" / "tok.json"
    trained.save(path)
    assert len(renames) == 1, f"expected one os.replace onto the target, got {renames}"
    src, dst = (os.path.abspath(x) for x in renames[0])
    assert dst == str(path), f"os.replace should land on {path}, it wrote {dst}"
    assert os.path.dirname(src) == str(path.parent), f"the temp file {src} is not in the target's folder {path.parent}"


@pytest.mark.task("save-load")
def test_load_refuses_bad_files_clearly(impl, trained, tmp_path):
    good = trained.save(tmp_path / "good.json")
    data = json.loads(good.read_text())
    bad_files = {
        "garbage.json": "this is not json",
        "list.json": "[1, 2, 3]",
        "format.json": json.dumps({**data, "format": "something-else"}),
        "missing.json": json.dumps({k: v for k, v in data.items() if k != "merges"}),
        "badmerge.json": json.dumps({**data, "merges": [[5000, 7, 256]]}),
    }
    for name, content in bad_files.items():
        (tmp_path / name).write_text(content)
        with pytest.raises(ValueError) as err:
            impl.Tokenizer.load(tmp_path / name)
        assert name in str(err.value), f"the error for a bad file should name it; got {str(err.value)!r}"
