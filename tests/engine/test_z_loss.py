"""The z-loss (training.z_loss_coeff, forks' --use-z-loss): every trained token's loss gains
coeff × logsumexp(logits)², PaLM's auxiliary term, in the plain and the chunked loss alike."""
import torch

from tests.engine.helpers import llama_with_loss


def test_z_loss_adds_exactly_coeff_times_log_z_squared_per_trained_token():
    model, b = llama_with_loss(2, seed=3)
    coeff = 1e-4
    with torch.no_grad():
        plain, n = model.lm_loss(b["tokens"], b["labels"], b["loss_mask"], position_ids=b["position_ids"])
        with_z, n_z = model.lm_loss(b["tokens"], b["labels"], b["loss_mask"], position_ids=b["position_ids"],
                                    z_loss_coeff=coeff)
        chunked, _ = model.lm_loss(b["tokens"], b["labels"], b["loss_mask"], position_ids=b["position_ids"],
                                   chunk_size=8, z_loss_coeff=coeff)
        logits = model(input_ids=b["tokens"], position_ids=b["position_ids"]).logits.float()
    log_z = torch.logsumexp(logits, dim=-1)
    expected = coeff * (log_z.square() * b["loss_mask"]).sum()
    assert n == n_z and float(expected) > 0
    torch.testing.assert_close(with_z, plain + expected, rtol=1e-6, atol=0)  # sums of ~200: fp32 resolution
    torch.testing.assert_close(chunked, with_z, rtol=1e-6, atol=1e-6)


def test_z_loss_gradient_pulls_log_z_towards_zero():
    model, b = llama_with_loss(2, seed=3)
    head = model.get_output_embeddings().weight
    grads = []
    for coeff in (0.0, 1.0):
        model.zero_grad()
        s, n = model.lm_loss(b["tokens"], b["labels"], b["loss_mask"], position_ids=b["position_ids"],
                             z_loss_coeff=coeff)
        (s / n).backward()
        grads.append(head.grad.clone())
    assert not torch.allclose(grads[0], grads[1])  # the term reaches the weights
