"""Each loss against a plain-loop reference, and the registry's error."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from qdrant_compat.errors import InvalidArgumentError
from qdrant_compat.losses import CompositeLoss, LossInputs, create_loss, list_losses


def _inputs(n=6, d=5, c=4, d_old=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(n, d, generator=g), dim=1)
    w = torch.randn(c, d, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 1, 0][:n])
    cos = emb @ F.normalize(w, dim=1).t()
    old_emb = F.normalize(torch.randn(n, d_old, generator=g), dim=1)
    old_w = F.normalize(torch.randn(c, d_old, generator=g), dim=1)
    return LossInputs(emb=emb, labels=labels, cos=cos, old_emb=old_emb, old_weight=old_w)


def _ce_loop(cos_rows, labels, scale, margin):
    total = 0.0
    for row, y in zip(cos_rows.tolist(), labels.tolist(), strict=True):
        logits = [scale * (v - (margin if j == y else 0.0)) for j, v in enumerate(row)]
        m = max(logits)
        lse = m + math.log(sum(math.exp(v - m) for v in logits))
        total += lse - logits[y]
    return total / len(labels)


def test_norm_softmax_matches_loop():
    x = _inputs()
    got = create_loss("norm_softmax", scale=10.0, margin=0.2)(x)
    assert float(got) == pytest.approx(_ce_loop(x.cos, x.labels, 10.0, 0.2), rel=1e-5)


def test_influence_uses_old_classifier():
    x = _inputs()
    got = create_loss("influence", scale=16.0, margin=0.0)(x)
    cos_old = [[sum(a * b for a, b in zip(e, w, strict=True)) for w in x.old_weight.tolist()] for e in x.emb.tolist()]
    assert float(got) == pytest.approx(_ce_loop(torch.tensor(cos_old), x.labels, 16.0, 0.0), rel=1e-5)


def test_influence_with_wider_new_embedding_uses_leading_dims():
    x = _inputs(d=8, d_old=5)
    got = create_loss("influence", margin=0.0)(x)
    lead = F.normalize(x.emb[:, :5], dim=1)
    ref = _ce_loop(lead @ x.old_weight.t(), x.labels, 16.0, 0.0)
    assert float(got) == pytest.approx(ref, rel=1e-5)


def test_alignment_is_one_minus_cosine():
    x = _inputs()
    ref = sum(1 - sum(a * b for a, b in zip(e, o, strict=True)) for e, o in zip(x.emb.tolist(), x.old_emb.tolist(), strict=True))
    assert float(create_loss("alignment")(x)) == pytest.approx(ref / len(x.labels), rel=1e-5)


def test_cross_contrastive_matches_loop():
    x = _inputs()
    t = 0.1
    got = float(create_loss("cross_contrastive", temperature=t)(x))
    e, o, y = x.emb.tolist(), x.old_emb.tolist(), x.labels.tolist()
    total = 0.0
    for i in range(len(e)):
        logits = [sum(a * b for a, b in zip(e[i], o[j], strict=True)) / t for j in range(len(o))]
        m = max(logits)
        lse = m + math.log(sum(math.exp(v - m) for v in logits))
        pos = [j for j in range(len(o)) if y[j] == y[i]]
        total += sum(lse - logits[j] for j in pos) / len(pos)
    assert got == pytest.approx(total / len(e), rel=1e-5)


def test_loss_without_old_model_is_a_clear_error():
    x = _inputs()
    x.old_emb = x.old_weight = None
    with pytest.raises(InvalidArgumentError, match="needs an old model"):
        create_loss("influence")(x)


def test_unknown_loss_lists_valid_names():
    with pytest.raises(InvalidArgumentError, match=r"unknown loss 'nope'; choose one of \['alignment'"):
        create_loss("nope")
    assert {"norm_softmax", "influence", "alignment", "cross_contrastive"} <= set(list_losses())


def test_composite_weights_terms_and_gradients_flow():
    x = _inputs()
    x.emb.requires_grad_(True)
    comp = CompositeLoss({"norm_softmax": (1.0, create_loss("norm_softmax")), "alignment": (0.5, create_loss("alignment"))})
    total, parts = comp(x)
    assert float(total.detach()) == pytest.approx(float(parts["norm_softmax"]) + 0.5 * float(parts["alignment"]), rel=1e-5)
    total.backward()
    assert x.emb.grad is not None and torch.isfinite(x.emb.grad).all() and x.emb.grad.abs().sum() > 0


def test_cross_distill_matches_loop_and_respects_seen_mask():
    x = _inputs()
    t = 0.2
    e, o = x.emb.tolist(), x.old_emb.tolist()
    per = []
    for i in range(len(e)):
        js = [j for j in range(len(o)) if j != i]
        lt = [sum(a * b for a, b in zip(o[i], o[j], strict=True)) / t for j in js]
        ls = [sum(a * b for a, b in zip(e[i], o[j], strict=True)) / t for j in js]
        zt, zs = math.log(sum(math.exp(v) for v in lt)), math.log(sum(math.exp(v) for v in ls))
        per.append(sum(math.exp(a - zt) * ((a - zt) - (b - zs)) for a, b in zip(lt, ls, strict=True)))
    loss = create_loss("cross_distill", temperature=t, only_seen=1.0)
    assert float(loss(x)) == pytest.approx(sum(per) / len(per), rel=1e-5)
    x.seen_mask = torch.tensor([True, False, True, False, False, False])
    assert float(loss(x)) == pytest.approx((per[0] + per[2]) / 2, rel=1e-5)
    x.emb = x.old_emb.clone()  # identical views of the old gallery: nothing to distil
    assert float(loss(x)) == pytest.approx(0.0, abs=1e-6)


def _softmax_rows(rows):
    out = []
    for row in rows:
        m = max(row)
        z = sum(math.exp(v - m) for v in row)
        out.append([math.exp(v - m) / z for v in row])
    return out


def test_instance_contrastive_matches_loop_and_reads_no_label():
    x = _inputs()
    t = 0.1
    e, o = x.emb.tolist(), x.old_emb.tolist()
    total = 0.0
    for i in range(len(e)):
        logits = [sum(a * b for a, b in zip(e[i], o[j], strict=True)) / t for j in range(len(o))]
        total += -math.log(_softmax_rows([logits])[0][i])
    loss = create_loss("instance_contrastive", temperature=t)
    assert float(loss(x)) == pytest.approx(total / len(e), rel=1e-5)
    x.labels = torch.zeros_like(x.labels)  # labels play no part
    assert float(loss(x)) == pytest.approx(total / len(e), rel=1e-5)


def test_self_distill_matches_loop_and_is_zero_when_the_embedding_keeps_the_backbone_ranking():
    x = _inputs()
    g = torch.Generator().manual_seed(3)
    x.feat = torch.randn(6, 7, generator=g)
    t, tt = 0.1, 0.05
    f = F.normalize(x.feat, dim=1).tolist()
    e = x.emb.tolist()
    total = 0.0
    for i in range(6):
        js = [j for j in range(6) if j != i]
        p = _softmax_rows([[sum(a * b for a, b in zip(f[i], f[j], strict=True)) / tt for j in js]])[0]
        q = _softmax_rows([[sum(a * b for a, b in zip(e[i], e[j], strict=True)) / t for j in js]])[0]
        total += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True) if pi > 0)
    loss = create_loss("self_distill", temperature=t, teacher_temperature=tt)
    assert float(loss(x)) == pytest.approx(total / 6, rel=1e-4)
    x.feat = x.emb.clone()  # the embedding is the (normalised) backbone feature: nothing to distil at equal temperature
    same = create_loss("self_distill", temperature=0.1, teacher_temperature=0.1)
    assert float(same(x)) == pytest.approx(0.0, abs=1e-6)
    x.feat = None
    with pytest.raises(InvalidArgumentError, match="needs the backbone's features"):
        loss(x)


def test_the_cross_terms_together_give_the_gradients_of_two_plainly_written_softmaxes():
    """Both cross-model terms in one composite (sharing one similarity matrix), with a bank, sharply peaked logits (temperature 0.02) and the
    query's own old embedding dominating: value and gradient equal two plainly written soft-target
    cross-entropies (one softmax over every key, one with the own key masked out)."""
    x = _inputs(seed=3)
    g = torch.Generator().manual_seed(7)
    x.bank_emb = F.normalize(torch.randn(5, 5, generator=g), dim=1)
    x.bank_labels = torch.tensor([0, 1, 2, 3, 0])
    x.emb = F.normalize(x.old_emb + 0.05 * torch.randn(6, 5, generator=g), dim=1).requires_grad_(True)
    t = 0.02
    comp = CompositeLoss({"cross_contrastive": (8.0, create_loss("cross_contrastive", temperature=t)),
                          "cross_distill": (4.0, create_loss("cross_distill", temperature=t))})
    total, _ = comp(x)
    (grad,) = torch.autograd.grad(total, x.emb)

    e = x.emb.detach().clone().requires_grad_(True)
    keys = torch.cat([x.old_emb, x.bank_emb])
    labels = torch.cat([x.labels, x.bank_labels])
    own = torch.zeros(6, 11, dtype=torch.bool)
    own[torch.arange(6), torch.arange(6)] = True
    logits = e @ keys.t() / t
    pos = (x.labels[:, None] == labels[None, :]).float()
    contrastive = -(F.log_softmax(logits, dim=1) * pos / pos.sum(1, keepdim=True)).sum(1).mean()
    teacher = F.softmax((x.old_emb @ keys.t() / t).masked_fill(own, float("-inf")), dim=1)
    log_student = F.log_softmax(logits.masked_fill(own, float("-inf")), dim=1).masked_fill(own, 0.0)
    distill = (teacher * (torch.log(teacher.clamp_min(1e-30)) - log_student)).sum(1).mean()
    ref = 8.0 * contrastive + 4.0 * distill
    (ref_grad,) = torch.autograd.grad(ref, e)
    assert float(total.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    assert torch.allclose(grad, ref_grad, rtol=1e-4, atol=1e-5)


def test_predictor_maps_the_new_embedding_through_its_own_head_and_trains_it():
    li = _inputs(d=5, d_old=3)
    loss = create_loss("predictor", hidden=8, depth=1, contrast=0.5, temperature=0.1)
    with pytest.raises(InvalidArgumentError, match="no head yet"):
        loss(li)
    CompositeLoss({"predictor": (1.0, loss)}).bind(5, 3)
    head = loss.adapter().module
    assert head is loss.head and loss.adapter().dim_in == 5 and loss.adapter().dim_out == 3
    li.emb.requires_grad_(True)
    value = loss(li)
    # the plain formula: 1 - cos(g(new), old), plus InfoNCE of g(new_i) among the batch's old embeddings
    p = head(li.emb).detach()
    point = sum(1 - float(torch.dot(p[i], li.old_emb[i])) for i in range(len(p))) / len(p)
    ce = 0.0
    for i in range(len(p)):
        logits = [float(torch.dot(p[i], li.old_emb[j])) / 0.1 for j in range(len(p))]
        m = max(logits)
        ce += m + math.log(sum(math.exp(v - m) for v in logits)) - logits[i]
    assert value.item() == pytest.approx(point + 0.5 * ce / len(p), rel=1e-5)
    value.backward()
    assert li.emb.grad is not None and li.emb.grad.abs().sum() > 0
    assert all(q.grad is not None for q in head.parameters() if q.requires_grad)
    assert sum(q.numel() for q in CompositeLoss({"p": (1.0, loss)}).parameters()) > 0  # optimised with the model


def test_predictor_refuses_bad_options():
    with pytest.raises(InvalidArgumentError, match="temperature > 0"):
        create_loss("predictor", temperature=0.0)
