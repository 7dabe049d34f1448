"""Lab 03 re-rankers: the cross-encoder's logits against sentence-transformers' CrossEncoder.predict, a short
training run that must separate positives from negatives, the re-rank order, and the LLM judge's Yes/No
log-odds against a direct forward pass (tiny random Llama fast; SmolLM2 in a slow test)."""
import copy

import numpy as np
import pytest
import torch
from sentence_transformers import CrossEncoder
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from labkit import assets

PAIRS = [("kettle error code E-417", "Code E-417 on the Brisk K2 kettle means the element failed."),
         ("kettle error code E-417", "Gift cards are valid for three years."),
         ("how bright is the Larkspur 300", "The Larkspur 300 is a projector rated at 3,000 lumens."),
         ("how bright is the Larkspur 300", "Returns are accepted within 30 days."),
         ("washer smells musty", "Run an empty 90 degree cycle with soda crystals to remove mould."),
         ("washer smells musty", "The Orrin R8 is a tri-band Wi-Fi 7 router."),
         ("robot vacuum stuck under sofa", "Set no-go zones around low furniture in the app."),
         ("robot vacuum stuck under sofa", "The Sorrel B1 bakes a 1 kg loaf in three hours.")]
LABELS = [1.0, 0.0] * 4


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (labkit plugin)


@pytest.fixture(scope="module")
def cross_encoder():
    return CrossEncoder(str(assets.minilm_path()), num_labels=1, max_length=64, device="cpu")


@pytest.mark.task("cross-encoder")
def test_logits_equal_cross_encoder_predict(impl, cross_encoder):
    cross_encoder.model.eval()
    with torch.no_grad():
        got = impl.cross_encoder_logits(cross_encoder, [(q, d) for q, d in PAIRS]).numpy()
    want = cross_encoder.predict([(q, d) for q, d in PAIRS], activation_fn=torch.nn.Identity())
    assert got.shape == (len(PAIRS),), f"expected one logit per pair, shape ({len(PAIRS)},), got {got.shape}"
    assert np.allclose(got, want, atol=1e-4), f"expected CrossEncoder.predict's raw logits {want}, got {got}"


def without_dropout(ce):
    for module in ce.model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return ce


def reference_losses(ce, steps, lr, head_lr):
    """Full-batch BCE-with-logits training of the pooler and head only (the encoder frozen), written out."""
    for p in ce.model.parameters():
        p.requires_grad_(False)
    body, head = list(ce.model.base_model.pooler.parameters()), list(ce.model.classifier.parameters())
    for p in body + head:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": head, "lr": head_lr}])
    batch = ce.tokenizer([q for q, _ in PAIRS], [d for _, d in PAIRS], padding=True, truncation=True,
                         max_length=64, return_tensors="pt")
    labels = torch.tensor(LABELS)
    ce.model.train()
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(ce.model(**batch).logits[:, 0], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.task("cross-encoder")
def test_training_losses_follow_a_written_out_reference(impl, cross_encoder):
    # one batch holds every pair, so the shuffle only reorders rows; without dropout both runs are deterministic.
    # Step 1 checks the loss itself (BCE on raw logits); steps 2-3 check that each update uses only its own
    # batch's gradient (zero_grad before backward).
    ours, ref = without_dropout(copy.deepcopy(cross_encoder)), without_dropout(copy.deepcopy(cross_encoder))
    triples = [(q, d, y) for (q, d), y in zip(PAIRS, LABELS)]
    got = impl.train_cross_encoder(ours, triples, epochs=3, batch_size=len(PAIRS), lr=1e-3, head_lr=2e-2,
                                   trainable_layers=0)
    want = reference_losses(ref, 3, lr=1e-3, head_lr=2e-2)
    assert np.allclose(got, want, atol=1e-4), f"expected the reference losses {want}, got {got}"


@pytest.mark.task("cross-encoder")
def test_short_training_separates_positives_from_negatives(impl, cross_encoder):
    triples = [(q, d, y) for (q, d), y in zip(PAIRS, LABELS)]
    losses = impl.train_cross_encoder(cross_encoder, triples, epochs=6, batch_size=8, lr=1e-4)
    assert len(losses) == 6, f"6 epochs of one batch of 8 should take 6 steps, got {len(losses)}"
    assert losses[-1] < losses[0], f"training loss should fall: {losses[0]:.3f} -> {losses[-1]:.3f}"
    scores = cross_encoder.predict([(q, d) for q, d in PAIRS], activation_fn=torch.nn.Identity())
    pos, neg = scores[0::2], scores[1::2]
    assert (pos > neg).all(), f"after training, each positive should outscore its negative: {pos} vs {neg}"


@pytest.mark.task("rerank")
def test_rerank_orders_the_head_and_keeps_the_tail(impl):
    texts = {"a": "x", "b": "xxx", "c": "xx", "d": "xxxx", "e": "xxxxx"}
    by_length = lambda query, docs: [len(d) for d in docs]  # noqa: E731
    got = impl.rerank(by_length, "q", ["a", "b", "c", "d", "e"], texts, top_n=3)
    assert got == ["b", "c", "a", "d", "e"], f"expected the top 3 re-ordered (b, c, a) then d, e unchanged, got {got}"
    ties = impl.rerank(lambda q, docs: [1.0] * len(docs), "q", ["c", "a", "b"], texts, top_n=3)
    assert ties == ["c", "a", "b"], f"equal scores must keep the original order, got {ties}"
    # a longer list with many ties (unstable sorts shuffle equal keys once a list is longer than ~16)
    ids = [f"d{i:02d}" for i in range(40)]
    grade = {d: float(i % 3 == 0) for i, d in enumerate(ids)}
    got = impl.rerank(lambda q, docs: [grade[d] for d in docs], "q", ids, {d: d for d in ids}, top_n=40)
    want = sorted(ids, key=lambda d: -grade[d])                          # Python's sort is stable
    assert got == want, f"equal scores must keep their original order: expected {want[:8]}..., got {got[:8]}..."


@pytest.fixture(scope="module")
def tiny_judge():
    tokenizer = AutoTokenizer.from_pretrained(assets.smollm2_path())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval(), tokenizer


@pytest.mark.task("llm-rerank")
def test_llm_scores_equal_yes_minus_no_logits(impl, tiny_judge):
    model, tokenizer = tiny_judge
    docs = ["Short doc.", "A much longer document about kettles, limescale and the descaling program."]
    got = impl.llm_relevance_scores(model, tokenizer, "descale my kettle", docs)
    yes, no = tokenizer.encode("Yes", add_special_tokens=False)[0], tokenizer.encode("No", add_special_tokens=False)[0]
    want = []
    with torch.no_grad():
        for d in docs:  # one prompt at a time: no padding at all
            ids = tokenizer(impl.judge_prompt(tokenizer, "descale my kettle", d), return_tensors="pt",
                            add_special_tokens=False).input_ids
            logits = model(ids).logits[0, -1]
            want.append(float(logits[yes] - logits[no]))
    assert np.allclose(got, want, atol=1e-4), f"expected logit(Yes) - logit(No) per document {want}, got {list(got)}"


@pytest.mark.slow
@pytest.mark.task("llm-rerank")
def test_smollm2_batched_scores_equal_one_at_a_time(impl):
    """SmolLM2-135M is too small to judge relevance reliably (see the README), so this checks the mechanics on the
    real model: the left-padded batch gives each document the score of its own unpadded forward pass."""
    model, tokenizer = assets.smollm2()
    query, docs = "How tall is the Ostrand lighthouse?", ["The Ostrand lighthouse stands 38 metres tall.",
                                                          "Gift cards are valid for three years, online or in store."]
    got = impl.llm_relevance_scores(model, tokenizer, query, docs)
    yes, no = tokenizer.encode("Yes", add_special_tokens=False)[0], tokenizer.encode("No", add_special_tokens=False)[0]
    with torch.no_grad():
        want = []
        for d in docs:
            ids = tokenizer(impl.judge_prompt(tokenizer, query, d), return_tensors="pt", add_special_tokens=False).input_ids
            logits = model(ids).logits[0, -1]
            want.append(float(logits[yes] - logits[no]))
    assert np.allclose(got, want, atol=1e-3), f"expected the unpadded log-odds {want}, got {list(got)}"
