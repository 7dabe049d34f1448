"""Checks for the reward-model + DPO lab. References: hand-computed losses, transformers'
LlamaForSequenceClassification (last-token pooling), a brute-force per-token log-prob loop, trl 1.16's DPOTrainer
loss (its `compute_loss` on the same batch, sigmoid and IPO) and trl's own evaluation metrics after a DPO run."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaForSequenceClassification

trl = pytest.importorskip("trl")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one torch thread (the plugin's fixture)


@pytest.fixture(scope="module")
def tok(impl):
    return impl.tiny_tokenizer()


def perturbed(model, scale=0.05, seed=1):
    """A copy of `model` with noise on every weight: a policy that differs from its reference."""
    g = torch.Generator().manual_seed(seed)
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return other


# ------------------------------------------------------------------------------------------ reward model

@pytest.mark.task("reward-model")
def test_bradley_terry_by_hand(impl):
    r_c = torch.tensor([1.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)
    r_r = torch.tensor([0.0, 2.0, 3.0], dtype=torch.float64)
    loss = impl.bradley_terry_loss(r_c, r_r)
    expected = (math.log1p(math.exp(-1)) + math.log1p(math.exp(2)) + math.log(2)) / 3  # -log sigmoid(x) = log(1+e^-x)
    assert loss.item() == pytest.approx(expected, abs=1e-12), f"expected {expected}, got {loss.item()}"
    loss.backward()
    assert (r_c.grad < 0).all(), f"raising the chosen reward must lower the loss; gradient {r_c.grad.tolist()}"
    big = impl.bradley_terry_loss(torch.tensor([200.0]), torch.tensor([-200.0]))
    assert torch.isfinite(big) and big.item() < 1e-30, f"a huge margin should give ~0 loss, got {big.item()}"
    wrong = impl.bradley_terry_loss(torch.tensor([-200.0]), torch.tensor([200.0]))  # float32, badly ranked
    assert torch.isfinite(wrong) and wrong.item() == pytest.approx(400.0), \
        f"a pair ranked wrong by 400 should cost -log sigmoid(-400) = 400 (finite), got {wrong.item()}"


@pytest.mark.task("reward-model")
def test_reward_model_matches_transformers_sequence_classifier(impl, tok):
    lm = impl.tiny_llama(len(tok))
    rm = impl.RewardModel.from_causal_lm(lm).eval()
    with torch.no_grad():
        rm.head.bias.zero_()  # LlamaForSequenceClassification's score layer has no bias
    config = copy.deepcopy(lm.config)
    config.num_labels, config.pad_token_id = 1, tok.pad_token_id  # a scalar reward head, pooled before the padding
    ref = LlamaForSequenceClassification(config).eval()
    ref.model.load_state_dict(rm.backbone.state_dict())
    with torch.no_grad():
        ref.score.weight.copy_(rm.head.weight)
    batch = impl.encode_pairs(tok, impl.preference_pairs(6, seed=3, words=2) + impl.preference_pairs(2, seed=4))
    with torch.no_grad():
        got = rm(batch["input_ids"], batch["attention_mask"])
        want = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
        alone = rm(batch["input_ids"][:1, : int(batch["attention_mask"][0].sum())],
                   torch.ones(1, int(batch["attention_mask"][0].sum()), dtype=torch.long))
    assert got.shape == (batch["input_ids"].size(0),), f"expected one score per sequence, got shape {got.shape}"
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4, msg="scores differ from LlamaForSequenceClassification")
    torch.testing.assert_close(got[:1], alone, atol=1e-5, rtol=1e-4, msg="right padding changed a sequence's score")


@pytest.mark.task("reward-model")
def test_reward_model_learns_the_preference(impl, tok):
    rm = impl.RewardModel.from_causal_lm(impl.tiny_llama(len(tok)))
    losses = impl.train_reward_model(rm, impl.encode_pairs(tok, impl.preference_pairs(32, seed=0)), steps=25)
    test = impl.encode_pairs(tok, impl.preference_pairs(100, seed=9))
    with torch.no_grad():
        s = rm(test["input_ids"], test["attention_mask"])
    acc = (s[:100] > s[100:]).float().mean().item()
    assert losses[-1] < 0.2 and acc >= 0.9, f"expected BT loss < 0.2 and held-out accuracy >= 0.9, got " \
                                            f"{losses[-1]:.3f} and {acc:.3f}"


# ------------------------------------------------------------------------------------------ log-probs

@pytest.mark.task("sequence-logprobs")
def test_sequence_logprobs_brute_force(impl, tok):
    model = impl.tiny_llama(len(tok)).eval()
    batch = impl.encode_pairs(tok, impl.preference_pairs(3, seed=5, words=2) + impl.preference_pairs(1, seed=6))
    with torch.no_grad():
        got = impl.sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        want = []
        for ids, mask in zip(batch["input_ids"], batch["completion_mask"]):
            total = 0.0
            for t in torch.nonzero(mask).flatten().tolist():  # every completion token, scored from its prefix
                logits = model(input_ids=ids[None, :t]).logits[0, -1].double()
                total += torch.log_softmax(logits, -1)[ids[t]].item()
            want.append(total)
    torch.testing.assert_close(got.double(), torch.tensor(want, dtype=torch.float64), atol=1e-4, rtol=1e-5,
                               msg="sequence log-probs differ from a per-token sum over the completion")


@pytest.mark.task("sequence-logprobs")
def test_sequence_logprobs_count_only_masked_tokens(impl, tok):
    model = impl.tiny_llama(len(tok)).eval()
    batch = impl.encode_pairs(tok, impl.preference_pairs(2, seed=7))
    ids, att = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        zero = impl.sequence_logprobs(model, ids, att, torch.zeros_like(ids))
        everything = impl.sequence_logprobs(model, ids, att, att)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=att).logits, -1)
        want = (logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0] * att[:, 1:]).sum(1)
    assert torch.equal(zero, torch.zeros_like(zero)), f"no completion tokens should give 0, got {zero.tolist()}"
    torch.testing.assert_close(everything, want, atol=1e-5, rtol=1e-5,
                               msg="with every real token marked, expected the log-likelihood of tokens 1..T-1")


# ------------------------------------------------------------------------------------------ DPO loss

@pytest.mark.task("dpo-loss")
def test_dpo_is_ln2_when_policy_equals_reference(impl):
    lp = torch.tensor([-3.0, -10.5, -0.25], dtype=torch.float64)
    lr = torch.tensor([-4.0, -2.0, -7.0], dtype=torch.float64)
    loss, rc, rr = impl.dpo_loss(lp, lr, lp.clone(), lr.clone(), beta=0.1)
    assert abs(loss.item() - math.log(2)) < 1e-15, f"expected exactly ln 2 = {math.log(2)!r}, got {loss.item()!r}"
    assert torch.equal(rc, torch.zeros(3, dtype=torch.float64)) and torch.equal(rr, torch.zeros(3, dtype=torch.float64))


@pytest.mark.task("dpo-loss")
def test_dpo_ipo_kto_by_hand(impl):
    pc, pr = torch.tensor([-2.0, -5.0], dtype=torch.float64), torch.tensor([-6.0, -4.0], dtype=torch.float64)
    rc, rr = torch.tensor([-3.0, -5.0], dtype=torch.float64), torch.tensor([-5.0, -6.0], dtype=torch.float64)
    # log-ratios: chosen [1, 0], rejected [-1, 2]; h = [2, -2]
    beta = 0.5
    loss, r_c, r_r = impl.dpo_loss(pc, pr, rc, rr, beta=beta)
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(1.0))) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-12), f"DPO: expected {expected}, got {loss.item()}"
    assert r_c.tolist() == [0.5, 0.0] and r_r.tolist() == [-0.5, 1.0], (r_c.tolist(), r_r.tolist())
    ipo, _, _ = impl.dpo_loss(pc, pr, rc, rr, beta=beta, loss_type="ipo")
    assert ipo.item() == pytest.approx(((2 - 1) ** 2 + (-2 - 1) ** 2) / 2), f"IPO: expected 5.0, got {ipo.item()}"
    kto, _, _ = impl.dpo_loss(pc, pr, rc, rr, beta=beta, loss_type="kto")
    z = 0.5  # mean of [1, 0, -1, 2], clamped at 0
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    want = ((1 - sig(beta * (1 - z))) + (1 - sig(beta * (z + 1))) + (1 - sig(beta * (0 - z))) + (1 - sig(beta * (z - 2)))) / 2
    assert kto.item() == pytest.approx(want, abs=1e-12), f"KTO: expected {want}, got {kto.item()}"
    with pytest.raises(ValueError):
        impl.dpo_loss(pc, pr, rc, rr, loss_type="orpo")


@pytest.mark.task("dpo-loss")
def test_dpo_gradient_pushes_chosen_up_and_rejected_down(impl):
    pc = torch.tensor([-3.0], requires_grad=True)
    pr = torch.tensor([-3.0], requires_grad=True)
    loss, _, _ = impl.dpo_loss(pc, pr, torch.tensor([-3.0]), torch.tensor([-3.0]), beta=0.1)
    loss.backward()
    assert pc.grad.item() == pytest.approx(-0.05) and pr.grad.item() == pytest.approx(0.05), \
        f"at h=0 the gradients are -beta/2 and +beta/2; got {pc.grad.item()} and {pr.grad.item()}"


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


@pytest.mark.task("dpo-loss")
def test_dpo_large_margin_is_finite_and_rewards_are_detached(impl):
    pc = torch.tensor([-400.0], requires_grad=True)  # float32; h = -400, beta * h = -200
    loss, r_c, r_r = impl.dpo_loss(pc, torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]), beta=0.5)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(200.0), \
        f"-log sigmoid(-200) = 200 must come out finite in float32, got {loss.item()}"
    assert not r_c.requires_grad and not r_r.requires_grad, "the implicit rewards are for logging: return them detached"


@pytest.mark.task("dpo-loss")
@pytest.mark.parametrize("policy_chosen,policy_rejected,z", [
    ([-2.0, -5.0], [-6.0, -4.0], 0.5),   # log-ratios chosen [1, 0], rejected [-1, 2]: z = mean = 0.5
    ([-4.0, -7.0], [-6.0, -6.0], 0.0),   # chosen [-1, -2], rejected [-1, 0]: mean -1, clamped to z = 0
])
def test_kto_value_and_gradient_by_hand(impl, policy_chosen, policy_rejected, z):
    """KTO with the reference point z held fixed: d/d logratio_c of (1 - s(beta (lc - z))) is -beta s(1 - s)."""
    beta, ref_c, ref_r = 0.5, [-3.0, -5.0], [-5.0, -6.0]
    pc = torch.tensor(policy_chosen, dtype=torch.float64, requires_grad=True)
    pr = torch.tensor(policy_rejected, dtype=torch.float64, requires_grad=True)
    loss, _, _ = impl.dpo_loss(pc, pr, torch.tensor(ref_c, dtype=torch.float64),
                               torch.tensor(ref_r, dtype=torch.float64), beta=beta, loss_type="kto")
    loss.backward()
    lc = [p - r for p, r in zip(policy_chosen, ref_c)]
    lr = [p - r for p, r in zip(policy_rejected, ref_r)]
    want = sum((1 - sigmoid(beta * (c - z))) + (1 - sigmoid(beta * (z - r))) for c, r in zip(lc, lr)) / 2
    assert loss.item() == pytest.approx(want, abs=1e-12), f"KTO with z = {z}: expected {want}, got {loss.item()}"
    grad_c = [-beta * sigmoid(beta * (c - z)) * (1 - sigmoid(beta * (c - z))) / 2 for c in lc]
    grad_r = [beta * sigmoid(beta * (z - r)) * (1 - sigmoid(beta * (z - r))) / 2 for r in lr]
    assert pc.grad.tolist() == pytest.approx(grad_c, abs=1e-12) and pr.grad.tolist() == pytest.approx(grad_r, abs=1e-12), \
        f"gradients with z detached: expected {grad_c} / {grad_r}, got {pc.grad.tolist()} / {pr.grad.tolist()}"


def trl_trainer(impl, tok, model, rows, loss_type):
    from trl import DPOConfig, DPOTrainer
    from datasets import Dataset

    cfg = DPOConfig(output_dir="/tmp/labkit-dpo-parity", beta=0.2, loss_type=[loss_type], bf16=False,
                    gradient_checkpointing=False, report_to="none", per_device_train_batch_size=4, max_length=64)
    return DPOTrainer(model=model, ref_model=copy.deepcopy(model), args=cfg, train_dataset=Dataset.from_list(rows),
                      processing_class=tok)


@pytest.mark.task("dpo-loss")
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_loss_equals_trl_on_the_same_batch(impl, tok, loss_type):
    rows = impl.preference_pairs(4, seed=11) + impl.preference_pairs(2, seed=12, words=5)
    base = impl.tiny_llama(len(tok))
    trainer = trl_trainer(impl, tok, base, rows, loss_type)
    policy = trainer.model  # move the policy away from trl's frozen reference copy
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in policy.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    policy.eval()
    with torch.no_grad():
        trl_loss = trainer.compute_loss(policy, batch).item()
        args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        pol = impl.sequence_logprobs(policy, *args).double()
        ref = impl.sequence_logprobs(trainer.ref_model, *args).double()
    n = len(rows)
    if loss_type == "ipo":  # trl 1.16 averages IPO's log-ratios over completion tokens; feed per-token averages
        length = batch["completion_mask"][:, 1:].sum(1).double()
        pol, ref = pol / length, ref / length
    ours, _, _ = impl.dpo_loss(pol[:n], pol[n:], ref[:n], ref[n:], beta=0.2, loss_type=loss_type)
    assert abs(trl_loss - math.log(2)) > 1e-3 or loss_type == "ipo", "fixture check: policy differs from reference"
    assert ours.item() == pytest.approx(trl_loss, rel=1e-4, abs=1e-5), \
        f"trl's {loss_type} loss on this batch is {trl_loss:.6f}, got {ours.item():.6f}"


# ------------------------------------------------------------------------------------------ evaluation

@pytest.mark.task("preference-eval")
def test_implicit_margins_match_their_definition(impl, tok):
    ref = impl.tiny_llama(len(tok)).eval()
    policy = perturbed(ref).eval()
    batch = impl.encode_pairs(tok, impl.preference_pairs(5, seed=2))
    margins = impl.implicit_reward_margins(policy, ref, batch, beta=0.3)
    with torch.no_grad():  # the same quantity from logits, written out independently
        def seq_lp(m):
            logp = torch.log_softmax(m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, -1)
            tok_lp = logp[:, :-1].gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
            return (tok_lp * batch["completion_mask"][:, 1:]).sum(1)
        ratio = seq_lp(policy) - seq_lp(ref)
    torch.testing.assert_close(margins, 0.3 * (ratio[:5] - ratio[5:]), atol=1e-5, rtol=1e-4)
    assert torch.equal(impl.implicit_reward_margins(ref, ref, batch), torch.zeros(5)), "policy == ref: all zero"
    assert impl.preference_accuracy(torch.tensor([0.5, -1.0, 0.0, 2.0])) == 0.5, "a zero margin is not a win"


# ------------------------------------------------------------------------------------------ a DPO run with trl

@pytest.mark.task("dpo-run")
def test_dpo_trainer_is_configured_from_the_arguments(impl, tok, tmp_path):
    """Quick: no training. At the start the policy equals the reference, so trl's IPO loss is (0 - 1/(2 beta))^2,
    which shows that beta and the loss type reached the trainer."""
    model = impl.tiny_llama(len(tok))
    trainer = impl.make_dpo_trainer(model, tok, impl.preference_pairs(8, seed=0), beta=0.3, lr=2e-3, steps=7,
                                    batch_size=4, loss_type="ipo", output_dir=tmp_path)
    assert trainer.ref_model is not None and trainer.ref_model is not trainer.model, "a separate frozen reference"
    assert not trainer.args.bf16, "bf16 must be off on a CPU (trl's default would fail here)"
    assert (trainer.args.learning_rate, trainer.args.max_steps, trainer.args.per_device_train_batch_size) == \
        (2e-3, 7, 4), "learning rate, steps and batch size should come from the arguments"
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    trainer.model.eval()
    with torch.no_grad():
        start = trainer.compute_loss(trainer.model, batch).item()
    want = (1 / (2 * 0.3)) ** 2
    assert start == pytest.approx(want, rel=1e-5), f"IPO at h = 0 with beta 0.3 is {want:.4f}; trl computed {start:.4f}"


@pytest.fixture(scope="module")
def dpo_run(impl, tok, tmp_path_factory):
    model = impl.tiny_llama(len(tok), seed=0)
    trainer = impl.make_dpo_trainer(model, tok, impl.preference_pairs(128, seed=0), beta=0.1, lr=5e-3, steps=16,
                                    batch_size=16, output_dir=tmp_path_factory.mktemp("dpo"))
    trainer.train()
    return trainer


@pytest.mark.task("dpo-run")
def test_dpo_run_beats_chance_on_held_out_pairs(impl, dpo_run):
    from datasets import Dataset

    assert not dpo_run.args.bf16, "bf16 must be off on a CPU (trl's default would fail here)"
    assert dpo_run.ref_model is not None and dpo_run.ref_model is not dpo_run.model, "a separate frozen reference"
    metrics = dpo_run.evaluate(Dataset.from_list(impl.preference_pairs(64, seed=123)))
    acc, margin = metrics["eval_rewards/accuracies"], metrics["eval_rewards/margins"]
    assert acc >= 0.7 and margin > 0, f"held-out implicit-reward accuracy should beat chance (0.5) by 0.2 or more " \
                                      f"with a positive margin; trl measured {acc:.3f} and {margin:.3f}"
    logged = [h["loss"] for h in dpo_run.state.log_history if "loss" in h]
    assert logged[-1] < math.log(2), f"the DPO loss should fall below ln 2 = 0.693, last logged {logged[-1]:.3f}"


# ------------------------------------------------------------------------------------------ SmolLM2 end to end

@pytest.mark.slow
@pytest.mark.task("dpo-run")
def test_smollm2_dpo_end_to_end(impl, tmp_path):
    from labkit import assets

    model, tokenizer = assets.smollm2()
    model.train()
    rows = impl.preference_pairs(4, seed=0, words=2)
    trainer = impl.make_dpo_trainer(model, tokenizer, rows, beta=0.1, lr=1e-5, steps=1, batch_size=4,
                                    output_dir=tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    model.eval()
    with torch.no_grad():
        start = trainer.compute_loss(model, batch).item()
    assert start == pytest.approx(math.log(2), abs=1e-5), f"policy == reference must give ln 2, trl says {start}"
    model.train()
    trainer.train()
    model.eval()
    with torch.no_grad():
        trl_loss = trainer.compute_loss(model, batch).item()
        args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        pol, ref = impl.sequence_logprobs(model, *args), impl.sequence_logprobs(trainer.ref_model, *args)
    ours, _, _ = impl.dpo_loss(pol[:4], pol[4:], ref[:4], ref[4:], beta=0.1)
    assert trl_loss < math.log(2), f"one DPO step should lower the loss on its own batch, got {trl_loss}"
    assert ours.item() == pytest.approx(trl_loss, rel=1e-3), f"trl {trl_loss:.6f} vs ours {ours.item():.6f}"
