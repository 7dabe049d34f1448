"""Parity with lm-evaluation-harness on the real model: SmolLM2-135M-Instruct, the same 8 MMLU questions (one
per subject, zero-shot) and 3 HellaSwag items, scored by this harness and by lm-eval's HFLM through this lab's
task configs (run here directly). Per-item choices must be identical and the accuracies equal."""
import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def smollm2(impl):
    return impl.load_model("smollm2", "cpu")


@pytest.mark.task("loglikelihood")
@pytest.mark.parametrize("task, limit", [("mmlu", 8), ("hellaswag", 3)])
def test_same_choices_and_accuracies_as_lm_eval(impl, smollm2, lm_eval_task, task, limit):
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    mine = impl.evaluate_task(smollm2, task, limit=limit, batch_size=8, progress=False)
    ids = [item["doc_id"] for item in mine["items"]]
    reference = lm_eval_task(task)
    name = reference.config.task
    hflm = HFLM(pretrained=smollm2.model, tokenizer=smollm2.tokenizer, batch_size=4, device="cpu")
    # sorted: lm-eval labels the k-th chosen document (in file order) with samples[k]
    out = lm_eval.simple_evaluate(model=hflm, tasks=[reference], samples={name: sorted(ids)}, log_samples=True,
                                  bootstrap_iters=0, verbosity="ERROR")
    theirs = {int(s["doc_id"]): s for s in out["samples"][name]}
    assert sorted(theirs) == sorted(ids)
    for item in mine["items"]:
        ref = theirs[item["doc_id"]]
        ref_lls = [float(r[0][0]) for r in ref["resps"]]
        np.testing.assert_allclose(item["loglikelihoods"], ref_lls, atol=1e-3, err_msg=f"doc {item['doc_id']}")
        assert int(np.argmax(item["loglikelihoods"])) == int(np.argmax(ref_lls)), f"doc {item['doc_id']}"
        assert (item["acc"], item["acc_norm"]) == (ref["acc"], ref["acc_norm"]), f"doc {item['doc_id']}"
    for metric in ("acc", "acc_norm"):
        assert mine["metrics"][metric] == pytest.approx(out["results"][name][f"{metric},none"], abs=1e-12)
