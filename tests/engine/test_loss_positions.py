"""The loss computes the output head and the cross entropy only at the positions the loss mask counts (on the CPU):
the sum and every gradient are those of the whole [batch, seq, vocab] logits masked afterwards."""
import torch
import torch.nn.functional as F

from tests.engine.helpers import llama_with_loss


def _model_and_batch():
    model, batch = llama_with_loss(3, seed=5)
    batch["loss_mask"][0, : batch["loss_mask"].shape[1] // 2] = 0  # a masked-out prompt, as fine-tuning has
    return model, batch


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_loss_over_counted_positions_equals_the_masked_whole_logits_in_value_and_gradient():
    model, b = _model_and_batch()
    assert 0 < int(b["loss_mask"].sum()) < b["loss_mask"].numel()
    s, n = model.lm_loss(b["tokens"], b["labels"], b["loss_mask"], position_ids=b["position_ids"])
    (s / n).backward()
    ours = _grads(model)
    model.zero_grad()
    logits = model(input_ids=b["tokens"], position_ids=b["position_ids"]).logits.float()
    token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b["labels"].reshape(-1), reduction="none")
    ref = (token * b["loss_mask"].reshape(-1).float()).sum()
    (ref / b["loss_mask"].sum()).backward()
    torch.testing.assert_close(s, ref, rtol=1e-6, atol=1e-5)
    assert float(n) == float(b["loss_mask"].sum())
    for name, grad in _grads(model).items():
        torch.testing.assert_close(ours[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_a_micro_batch_with_no_counted_position_gives_zero_and_zero_gradients():
    model, b = _model_and_batch()
    s, n = model.lm_loss(b["tokens"], b["labels"], torch.zeros_like(b["loss_mask"]), position_ids=b["position_ids"])
    s.backward()
    assert s.item() == 0.0 and n.item() == 0.0
    assert all(float(g.abs().sum()) == 0.0 for g in _grads(model).values() if g is not None)
