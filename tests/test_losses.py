"""Unlearning losses checked against hand computations on tiny tensors (plain-Python softmax/KL)."""

from __future__ import annotations

import math

import pytest
import torch

from siu.unlearn.losses import (
    cross_entropy,
    dmk_for_batch,
    dpo_loss,
    dual_masked_kl,
    ga_kl,
    gradient_ascent,
    hidden_mse,
    kl_to_reference,
    masked_pieces,
    npo_loss,
    preference_optimization,
    sequence_logprobs,
    shift_for_next_token,
    simnpo_loss,
    siu_loss,
    vocab_mask_for_names,
)

LN2 = math.log(2.0)


# ---- plain-Python references (no torch ops) -------------------------------------------------------


def _softmax(row: list[float]) -> list[float]:
    exps = [math.exp(x) for x in row]
    total = sum(exps)
    return [e / total for e in exps]


def _masked_kl(ref_row: list[float], row: list[float], keep: list[bool]) -> float:
    """sum_v keep(v) p_ref(v) (log p_ref(v) - log p(v)), full-vocabulary softmax, no renormalising."""
    p_ref, p = _softmax(ref_row), _softmax(row)
    return sum(pr * (math.log(pr) - math.log(pt)) for pr, pt, k in zip(p_ref, p, keep, strict=True) if k)


def _nll(row: list[float], target: int) -> float:
    return -math.log(_softmax(row)[target])


# Reference uniform over 4 entries, model p = [1/8, 1/8, 1/4, 1/2]. Per-entry KL terms are
# [ln2/4, ln2/4, 0, -ln2/4], so the full KL is ln2/4 and dropping the last entry gives ln2/2.
UNIFORM = [0.0, 0.0, 0.0, 0.0]
SKEWED = [0.0, 0.0, LN2, 2 * LN2]


def _t(rows: list[list[list[float]]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# ---- shift helper ---------------------------------------------------------------------------------


def test_shift_for_next_token_aligns_logits_labels_and_mask() -> None:
    logits = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    labels = torch.tensor([[-100, 1, 0], [-100, -100, 1]])
    mask = torch.tensor([[False, True, False], [False, False, True]])
    s_logits, s_labels, s_mask = shift_for_next_token(logits, labels, mask)
    assert torch.equal(s_logits, logits[:, :2])
    assert s_labels.tolist() == [[1, 0], [-100, 1]]
    assert s_mask is not None and s_mask.tolist() == [[True, False], [False, True]]
    assert shift_for_next_token(logits, labels)[2] is None
    with pytest.raises(ValueError, match="labels"):
        shift_for_next_token(logits, labels[:, :2])


# ---- cross-entropy, GA, PO ------------------------------------------------------------------------


def test_cross_entropy_matches_hand_value() -> None:
    rows = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [0.3, 0.3, 0.3]]
    logits = _t([rows])
    labels = torch.tensor([[-100, 2, 0]])  # row 0 predicts label 2, row 1 predicts label 0, row 2 unused
    expected = (_nll(rows[0], 2) + _nll(rows[1], 0)) / 2
    assert cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_equals_transformers_causal_lm_loss() -> None:
    from transformers.loss.loss_utils import ForCausalLMLoss

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 11, generator=gen)
    labels = torch.randint(0, 11, (3, 6), generator=gen)
    labels[0, :3] = -100
    labels[1, 4:] = -100
    labels[2, 0] = -100
    expected = ForCausalLMLoss(logits, labels, vocab_size=11, num_items_in_batch=None)
    assert torch.allclose(cross_entropy(logits, labels), expected, rtol=1e-6, atol=1e-6)


def test_cross_entropy_without_labels_is_zero_with_grad() -> None:
    logits = torch.randn(1, 3, 4, requires_grad=True)
    loss = cross_entropy(logits, torch.full((1, 3), -100))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0


def test_gradient_ascent_and_po_are_signed_cross_entropy() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 5, generator=gen)
    labels = torch.tensor([[-100, 1, 2, 3], [-100, -100, 4, 0]])
    ce = cross_entropy(logits, labels)
    assert torch.equal(gradient_ascent(logits, labels), -ce)
    assert torch.equal(preference_optimization(logits, labels), ce)


# ---- KL to the reference and GA+KL ----------------------------------------------------------------


def test_kl_to_reference_hand_value_and_zero_for_identical_logits() -> None:
    # Only label position 1 counts, so only the logits at position 0 matter.
    logits = _t([[SKEWED, [5.0, 0.0, 0.0, 0.0]]])
    ref_logits = _t([[UNIFORM, [0.0, 0.0, 0.0, 5.0]]])
    labels = torch.tensor([[-100, 3]])
    assert kl_to_reference(logits, ref_logits, labels).item() == pytest.approx(LN2 / 4, rel=1e-6)
    assert kl_to_reference(logits, logits.clone(), labels).item() == pytest.approx(0.0, abs=1e-7)


def test_ga_kl_is_ga_plus_weighted_kl() -> None:
    logits = _t([[SKEWED, [5.0, 0.0, 0.0, 0.0]]])
    ref_logits = _t([[UNIFORM, UNIFORM]])
    labels = torch.tensor([[-100, 3]])
    expected = -_nll(SKEWED, 3) + 0.5 * (LN2 / 4)  # -(-ln(1/2)) + 0.5 * ln2/4
    assert ga_kl(logits, ref_logits, labels, kl_weight=0.5).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(-LN2 + LN2 / 8)


# ---- Dual Masked KL -------------------------------------------------------------------------------


def test_dmk_closed_form_with_vocab_mask() -> None:
    logits, ref_logits = _t([[SKEWED]]), _t([[UNIFORM]])
    token_mask = torch.tensor([[True]])
    all_kept = torch.ones(4, dtype=torch.bool)
    drop_last = torch.tensor([True, True, True, False])
    assert dual_masked_kl(logits, ref_logits, token_mask, all_kept).item() == pytest.approx(LN2 / 4, rel=1e-6)
    assert dual_masked_kl(logits, ref_logits, token_mask, drop_last).item() == pytest.approx(
        LN2 / 2, rel=1e-6
    )


def test_dmk_with_both_masks_matches_hand_computation() -> None:
    rows = [[[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], [[0.2, 0.1, -0.4], [2.0, 2.0, -1.0]]]
    ref_rows = [[[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]], [[-1.0, 0.5, 0.0], [0.0, 3.0, 1.0]]]
    token_mask = [[True, False], [True, True]]
    keep = [True, False, True]
    counted = [(b, t) for b in range(2) for t in range(2) if token_mask[b][t]]
    expected = sum(_masked_kl(ref_rows[b][t], rows[b][t], keep) for b, t in counted) / len(counted)
    got = dual_masked_kl(_t(rows), _t(ref_rows), torch.tensor(token_mask), torch.tensor(keep))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_dmk_with_all_true_masks_is_full_kl() -> None:
    gen = torch.Generator().manual_seed(2)
    logits, ref_logits = torch.randn(2, 3, 5, generator=gen), torch.randn(2, 3, 5, generator=gen)
    expected = (
        sum(
            _masked_kl(ref_logits[b, t].tolist(), logits[b, t].tolist(), [True] * 5)
            for b in range(2)
            for t in range(3)
        )
        / 6
    )
    got = dual_masked_kl(
        logits, ref_logits, torch.ones(2, 3, dtype=torch.bool), torch.ones(5, dtype=torch.bool)
    )
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_dmk_is_zero_for_identical_logits() -> None:
    logits = torch.randn(2, 3, 6)
    token_mask = torch.tensor([[True, False, True], [True, True, False]])
    vocab_mask = torch.tensor([True, False, True, True, False, True])
    assert dual_masked_kl(logits, logits.clone(), token_mask, vocab_mask).item() == pytest.approx(
        0.0, abs=1e-7
    )


def test_dmk_is_not_renormalised() -> None:
    keep = [True, True, True, False]
    # Renormalising over the kept entries: p_ref' = 1/3 each, p' = [1/4, 1/4, 1/2] -> (1/3) ln(32/27).
    p_ref_kept, p_kept = [1 / 3] * 3, [1 / 4, 1 / 4, 1 / 2]
    renormalised = sum(a * math.log(a / b) for a, b in zip(p_ref_kept, p_kept, strict=True))
    assert renormalised == pytest.approx(math.log(32 / 27) / 3)
    got = dual_masked_kl(_t([[SKEWED]]), _t([[UNIFORM]]), torch.tensor([[True]]), torch.tensor(keep)).item()
    assert got == pytest.approx(LN2 / 2, rel=1e-6)
    assert abs(got - renormalised) > 0.2


def test_dmk_gradient_reaches_logits_but_not_reference() -> None:
    logits = _t([[SKEWED]]).requires_grad_(True)
    ref_logits = _t([[UNIFORM]]).requires_grad_(True)
    loss = dual_masked_kl(logits, ref_logits, torch.tensor([[True]]), torch.ones(4, dtype=torch.bool))
    loss.backward()
    # d KL(p_ref || softmax(z)) / dz = p - p_ref = [1/8, 1/8, 1/4, 1/2] - 1/4.
    assert logits.grad is not None
    assert logits.grad[0, 0].tolist() == pytest.approx([-1 / 8, -1 / 8, 0.0, 1 / 4], abs=1e-6)
    assert ref_logits.grad is None


def test_dmk_with_no_counted_position_is_zero_with_grad() -> None:
    logits = torch.randn(2, 3, 4, requires_grad=True)
    loss = dual_masked_kl(
        logits, torch.randn(2, 3, 4), torch.zeros(2, 3, dtype=torch.bool), torch.ones(4, dtype=torch.bool)
    )
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0


def test_dmk_is_finite_with_bf16_and_infinite_reference_logits() -> None:
    logits = _t([[SKEWED]]).to(torch.bfloat16)
    ref_logits = _t([[[0.0, 0.0, float("-inf"), 0.0]]])
    loss = dual_masked_kl(logits, ref_logits, torch.tensor([[True]]), torch.ones(4, dtype=torch.bool))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_dmk_rejects_mismatched_shapes() -> None:
    logits = torch.zeros(2, 3, 4)
    tokens, vocab = torch.ones(2, 3, dtype=torch.bool), torch.ones(4, dtype=torch.bool)
    with pytest.raises(ValueError, match="ref_logits"):
        dual_masked_kl(logits, torch.zeros(2, 3, 5), tokens, vocab)
    with pytest.raises(ValueError, match="token_mask"):
        dual_masked_kl(logits, logits, torch.ones(2, 2, dtype=torch.bool), vocab)
    with pytest.raises(ValueError, match="vocab_mask"):
        dual_masked_kl(logits, logits, tokens, torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        dual_masked_kl(logits, logits, tokens.float(), vocab)
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        dual_masked_kl(torch.zeros(3, 4), torch.zeros(3, 4), tokens, vocab)


# ---- SIU loss and its ablations -------------------------------------------------------------------


# Unshifted batch of one sequence of 4 tokens: labels on tokens 1..3, token 2 is the target phrase.
SIU_ROWS = [[1.0, 0.0, -1.0, 0.5], [0.2, 2.0, 0.0, -0.5], [0.0, 0.3, 1.5, 0.0], [9.0, 9.0, 9.0, 9.0]]
SIU_REF = [[0.0, 1.0, 0.0, 0.5], [1.0, 0.0, 2.0, 0.0], [0.5, 0.5, -1.0, 2.0], [0.0, 0.0, 0.0, 0.0]]
SIU_LABELS = torch.tensor([[-100, 1, 2, 0]])
SIU_TARGET = torch.tensor([[False, False, True, False]])
SIU_VOCAB = torch.tensor([True, False, True, True])


def _siu_hand(rows_counted: list[int], keep: list[bool]) -> tuple[float, float]:
    ce = (_nll(SIU_ROWS[0], 1) + _nll(SIU_ROWS[1], 2) + _nll(SIU_ROWS[2], 0)) / 3
    dmk = sum(_masked_kl(SIU_REF[t], SIU_ROWS[t], keep) for t in rows_counted) / len(rows_counted)
    return ce, dmk


@pytest.mark.parametrize(
    ("use_token_mask", "use_vocab_mask", "rows_counted", "keep"),
    [
        (True, True, [0, 2], [True, False, True, True]),  # row 1 predicts the target-phrase token 2
        (False, True, [0, 1, 2], [True, False, True, True]),
        (True, False, [0, 2], [True, True, True, True]),
        (False, False, [0, 1, 2], [True, True, True, True]),
    ],
)
def test_siu_loss_is_weighted_ce_plus_dmk_with_ablations(
    use_token_mask: bool, use_vocab_mask: bool, rows_counted: list[int], keep: list[bool]
) -> None:
    ce, dmk = _siu_hand(rows_counted, keep)
    loss, logs = siu_loss(
        _t([SIU_ROWS]),
        _t([SIU_REF]),
        SIU_LABELS,
        SIU_TARGET,
        SIU_VOCAB,
        alpha=0.9,
        beta=0.75,
        use_token_mask=use_token_mask,
        use_vocab_mask=use_vocab_mask,
    )
    assert logs["ce"] == pytest.approx(ce, rel=1e-6)
    assert logs["dmk"] == pytest.approx(dmk, rel=1e-5)
    assert loss.item() == pytest.approx(0.9 * ce + 0.75 * dmk, rel=1e-6)


def test_siu_ablations_change_the_loss() -> None:
    args = (_t([SIU_ROWS]), _t([SIU_REF]), SIU_LABELS, SIU_TARGET, SIU_VOCAB)
    full = siu_loss(*args)[1]["dmk"]
    assert abs(siu_loss(*args, use_token_mask=False)[1]["dmk"] - full) > 1e-3
    assert abs(siu_loss(*args, use_vocab_mask=False)[1]["dmk"] - full) > 1e-3


def test_dmk_for_batch_only_target_positions_is_zero_with_grad() -> None:
    logits = _t([SIU_ROWS]).requires_grad_(True)
    labels = torch.tensor([[-100, -100, 2, -100]])
    loss = dmk_for_batch(logits, _t([SIU_REF]), labels, SIU_TARGET, SIU_VOCAB)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()


# ---- vocabulary mask ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [
        "Name said hi to the cat. name is here. The name of Name and the cat.",
        "hello Name name the cat sat",
    ]
    raw.train_from_iterator(corpus * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def _masked(tokenizer, names: list[str], vocab_size: int) -> set[str]:
    mask = vocab_mask_for_names(tokenizer, names, vocab_size)
    assert mask.dtype == torch.bool and mask.shape == (vocab_size,)
    return set(tokenizer.convert_ids_to_tokens(torch.nonzero(~mask).flatten().tolist()))


def test_vocab_mask_masks_exactly_the_name_pieces(tokenizer) -> None:
    vocab_size = len(tokenizer) + 6  # models often pad the embedding matrix
    # as written, and after a space; no lower-cased or capitalised spelling
    assert _masked(tokenizer, ["Name"], vocab_size) == {"Name", "ĠName"}
    assert _masked(tokenizer, ["name"], vocab_size) == {"name", "Ġname"}
    # "Dr." is spelt D r . (not in the corpus); " Dr. Name" starts with a lone "Ġ": "." and "Ġ" are in
    # every text, so they stay in the KL
    assert tokenizer.tokenize("Dr. Name") == ["D", "r", ".", "ĠName"]
    assert tokenizer.tokenize(" Dr. Name") == ["Ġ", "D", "r", ".", "ĠName"]
    assert _masked(tokenizer, ["Dr. Name"], vocab_size) == {"D", "r", "ĠName"}
    assert masked_pieces(tokenizer, ["Dr. Name", "Name"], vocab_size) == ["D", "r", " Name", "Name"]
    # a character split into bytes is the name's own ("ë" is two pieces, neither readable alone)
    assert tokenizer.tokenize("Zoë") == ["Z", "o", "Ã", "«"]
    assert masked_pieces(tokenizer, ["Zoë"], vocab_size) == ["Z", "o", "Ã", "«"]


def _llama_style_tokenizer():
    """A SentencePiece-like BPE laid out like Llama's fast tokenizer: the normalizer turns spaces into
    "▁" and prepends one, nothing splits the text, the decoder strips the first space. The merges are
    written out, so that every tokenisation below is checked by hand."""
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    m = "\u2581"
    merges = [(m, "T"), (m + "T", "e"), (m + "Te", "n"), ("r", "a"), ("ra", "n"), (m, "R"), (m + "R", "i"),
              (m + "Ri", "x"), ("t", "i"), ("ti", "v"), (m, "t"), ("e", "n")]  # fmt: skip
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", m, ",", ".", *"TRaeinrtvx"])}
    for left, right in merges:
        vocab[left + right] = len(vocab)
    raw = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>"))
    raw.normalizer = normalizers.Sequence([normalizers.Prepend(m), normalizers.Replace(" ", m)])
    raw.decoder = decoders.Sequence([decoders.Replace(m, " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def test_vocab_mask_on_a_llama_style_tokenizer_leaves_out_the_lone_space_and_other_spellings() -> None:
    tok = _llama_style_tokenizer()
    names = ["Tenran Rixtiv", "Tenran", "Rixtiv", "Rixtiv, Tenran"]
    assert tok.tokenize("Tenran Rixtiv") == ["▁Ten", "ran", "▁Rix", "tiv"]
    assert tok.tokenize(" Tenran") == ["▁", "▁Ten", "ran"]  # the lone leading-space piece
    assert tok.tokenize("Rixtiv, Tenran") == ["▁Rix", "tiv", ",", "▁Ten", "ran"]
    # the lower-cased spelling the mask used to add: generic pieces, in countless other words
    assert tok.tokenize("tenran rixtiv") == ["▁t", "en", "ran", "▁", "r", "i", "x", "tiv"]
    assert _masked(tok, names, len(tok)) == {"▁Ten", "ran", "▁Rix", "tiv"}
    assert masked_pieces(tok, names, len(tok)) == [" Ten", "ran", " Rix", "tiv"]
    assert masked_pieces(tok, ["Tenran"], 20) == [" Ten"]  # "ran" (id 20) is outside the logits


def test_vocab_mask_never_masks_special_tokens(tokenizer) -> None:
    vocab_size = len(tokenizer)
    eos = tokenizer.eos_token_id
    assert eos in tokenizer.encode("Name</s>", add_special_tokens=False)
    mask = vocab_mask_for_names(tokenizer, ["Name</s>", "<s>"], vocab_size)
    assert all(mask[i] for i in tokenizer.all_special_ids)
    assert not mask[tokenizer.convert_tokens_to_ids("ĠName")]


def test_vocab_mask_rejects_empty_names(tokenizer) -> None:
    for bad in ["", "   "]:
        with pytest.raises(ValueError, match="non-empty"):
            vocab_mask_for_names(tokenizer, ["Name", bad], len(tokenizer))


# ---- sequence-level losses: NPO, SimNPO, DPO ------------------------------------------------------


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_sequence_logprobs_sums_answer_tokens_by_hand() -> None:
    # row 0 predicts token 3 then token 2 (positions 1 and 2); row 1 only token 0 (position 2)
    logits = _t([[UNIFORM, SKEWED, SKEWED], [SKEWED, UNIFORM, SKEWED]])
    labels = torch.tensor([[-100, 3, 2], [-100, -100, 0]])
    logp, n = sequence_logprobs(logits, labels)
    expected0 = -_nll(UNIFORM, 3) - _nll(SKEWED, 2)
    expected1 = -_nll(UNIFORM, 0)
    assert logp.tolist() == pytest.approx([expected0, expected1], abs=1e-6)
    assert n.tolist() == [2, 1]


def test_npo_hand_value_and_its_value_at_the_reference() -> None:
    logp, ref = torch.tensor([-2.0, -5.0]), torch.tensor([-1.0, -5.0])
    beta = 0.5
    expected = (
        sum(-(2 / beta) * math.log(_sigmoid(-beta * (a - b))) for a, b in [(-2.0, -1.0), (-5.0, -5.0)]) / 2
    )
    assert float(npo_loss(logp, ref, beta)) == pytest.approx(expected, abs=1e-6)
    # at p = p_ref each term is (2 / beta) log 2
    assert float(npo_loss(ref, ref, beta)) == pytest.approx(2 / beta * LN2, abs=1e-6)


def test_npo_gradient_is_weighted_gradient_ascent_and_spares_the_reference() -> None:
    logp = torch.tensor([-1.0], requires_grad=True)
    ref = torch.tensor([-1.0], requires_grad=True)
    npo_loss(logp, ref, beta=0.1).backward()
    assert float(logp.grad) == pytest.approx(1.0, abs=1e-6)  # d/dlogp = 2 sigmoid(beta * 0) = 1: ascent
    assert ref.grad is None


def test_simnpo_is_length_normalised_and_reference_free() -> None:
    logp, n = torch.tensor([-6.0, -2.0]), torch.tensor([3, 1])
    beta, gamma = 2.5, 0.5
    expected = (
        sum(-(2 / beta) * math.log(_sigmoid(-(beta / k) * lp - gamma)) for lp, k in [(-6.0, 3), (-2.0, 1)])
        / 2
    )
    assert float(simnpo_loss(logp, n, beta, gamma)) == pytest.approx(expected, abs=1e-6)
    # the same per-token log-probability gives the same loss, whatever the length
    assert float(simnpo_loss(torch.tensor([-6.0]), torch.tensor([3]), beta, gamma)) == pytest.approx(
        float(simnpo_loss(torch.tensor([-2.0]), torch.tensor([1]), beta, gamma)), abs=1e-6
    )


def test_dpo_hand_value_and_ln2_at_the_reference() -> None:
    c, r, rc, rr = torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0])
    expected = -math.log(_sigmoid(0.1 * ((-1.0 + 2.0) - (-3.0 + 2.0))))
    assert float(dpo_loss(c, r, rc, rr, beta=0.1)) == pytest.approx(expected, abs=1e-6)
    assert float(dpo_loss(rc, rr, rc, rr, beta=0.1)) == pytest.approx(LN2, abs=1e-6)


def test_sequence_losses_on_no_sequence_are_zero_with_grad() -> None:
    empty = torch.zeros(0, requires_grad=True)
    for loss in (
        npo_loss(empty, empty, 0.1),
        simnpo_loss(empty, empty, 2.5, 0.0),
        dpo_loss(empty, empty, empty, empty, 0.1),
    ):
        assert float(loss.detach()) == 0.0 and loss.requires_grad
        loss.backward()


def test_hidden_mse_to_a_direction_and_to_reference_states_by_hand() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])  # position 2 predicts nothing
    labels = torch.tensor([[-100, 5, 6]])  # positions 0 and 1 predict answer tokens
    direction = torch.tensor([1.0, 0.0])
    expected = ((0**2 + 2**2) + (2**2 + 4**2)) / 4
    assert float(hidden_mse(hidden, direction, labels)) == pytest.approx(expected)
    reference = hidden + torch.tensor([0.5, -0.5])
    assert float(hidden_mse(hidden, reference, labels)) == pytest.approx(0.25)
    assert float(hidden_mse(hidden, hidden, torch.full((1, 3), -100)).detach()) == 0.0
