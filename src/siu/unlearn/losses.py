"""Unlearning losses: SIU's cross-entropy + Dual Masked KL (DMK), the paper's PO / GA / GA+KL
baselines, the sequence-level losses of NPO, SimNPO and DPO, and RMU's hidden-state distance.

All functions are pure functions of tensors: the caller runs the model (and the frozen reference)
and passes the logits in. See the project spec (SIU.md, sections 3 and 5).

Conventions
-----------
* Functions taking ``labels`` expect *unshifted* causal-LM outputs: ``logits`` (B, T, V) and
  ``labels`` (B, T) aligned with ``input_ids``, ``-100`` where a position is not supervised. They
  shift internally: the logits at position ``t - 1`` predict ``labels[t]``.
* Any per-token mask aligned with ``input_ids``/``labels`` (e.g. ``target_mask``) is shifted the same
  way as ``labels``, so after shifting it still marks the token being predicted.
* ``dual_masked_kl`` is the exception: it takes logits that are already shifted/aligned.
* Losses are computed in float32 (models may run in bf16), and only at the positions that count:
  with images expanded into hundreds of tokens, answer positions are a small fraction of the
  sequence, so selecting them before the softmax saves most of the memory.
* A batch with no counted position gives ``logits.sum() * 0``: a zero that keeps the graph, so
  ``backward()`` works and no NaN (0/0) reaches the optimiser.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100


def _zero_with_grad(logits: Tensor) -> Tensor:
    # Multiplying by zero keeps logits in the graph, so backward() is a no-op rather than an error.
    return logits.sum().float() * 0.0


def _check_logits_labels(logits: Tensor, labels: Tensor) -> None:
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (B, T, V), got {tuple(logits.shape)}")
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"labels must have shape (B, T) = {tuple(logits.shape[:2])} to match logits, got {tuple(labels.shape)}"
        )


def _check_same_shape(logits: Tensor, ref_logits: Tensor) -> None:
    if ref_logits.shape != logits.shape:
        raise ValueError(
            f"ref_logits must have the shape of logits {tuple(logits.shape)}, got {tuple(ref_logits.shape)}"
        )


def _check_bool_mask(name: str, mask: Tensor, shape: Sequence[int]) -> None:
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got dtype {mask.dtype}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(mask.shape)}")


def shift_for_next_token(
    logits: Tensor, labels: Tensor, token_mask: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Align causal-LM outputs for next-token prediction.

    Returns ``(logits[:, :-1], labels[:, 1:], token_mask[:, 1:])``: the logits at position ``t - 1``
    predict ``labels[t]``. ``token_mask`` (if given) is aligned with ``input_ids``/``labels`` and is
    shifted like ``labels``; ``None`` stays ``None``.
    """
    _check_logits_labels(logits, labels)
    if token_mask is not None and token_mask.shape != labels.shape:
        raise ValueError(
            f"token_mask must have the shape of labels {tuple(labels.shape)}, got {tuple(token_mask.shape)}"
        )
    shifted_mask = token_mask[:, 1:] if token_mask is not None else None
    return logits[:, :-1], labels[:, 1:], shifted_mask


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token cross-entropy over the label positions ``!= -100``.

    ``logits`` (B, T, V) and ``labels`` (B, T) are unshifted, as from a HF causal LM. Equals
    ``transformers``' ``ForCausalLMLoss`` with ``num_items_in_batch=None``, except that a batch with
    no label gives a zero carrying grad instead of NaN.
    """
    logits, labels, _ = shift_for_next_token(logits, labels)
    counted = labels != IGNORE_INDEX
    if not bool(counted.any()):
        return _zero_with_grad(logits)
    return F.cross_entropy(logits[counted].float(), labels[counted])


def gradient_ascent(logits: Tensor, labels: Tensor) -> Tensor:
    """GA baseline: the negated next-token cross-entropy on answers that name the concept."""
    return -cross_entropy(logits, labels)


def preference_optimization(logits: Tensor, labels: Tensor) -> Tensor:
    """PO baseline as used in the paper: plain next-token cross-entropy.

    The "preference" lives in the data: the data builder supplies refusal answers ("Sorry, I don't
    know.") to the image questions, and the model is fine-tuned on them.
    """
    return cross_entropy(logits, labels)


def dual_masked_kl(logits: Tensor, ref_logits: Tensor, token_mask: Tensor, vocab_mask: Tensor) -> Tensor:
    """Dual Masked KL: mean over counted positions of ``sum_v K_V(v) p_ref(v) (log p_ref(v) - log p(v))``.

    ``logits`` and ``ref_logits`` (B, T, V) are already aligned: position ``t`` predicts the token
    that ``token_mask[t]`` (K_S, bool (B, T)) refers to. ``vocab_mask`` (K_V, bool (V,)) is True on
    kept vocabulary entries. Both distributions are softmaxes over the *full* vocabulary; the mask
    is applied afterwards without renormalising (as in the paper). No gradient flows into
    ``ref_logits``.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (B, T, V), got {tuple(logits.shape)}")
    _check_same_shape(logits, ref_logits)
    _check_bool_mask("token_mask", token_mask, logits.shape[:2])
    _check_bool_mask("vocab_mask", vocab_mask, logits.shape[2:])

    token_mask = token_mask.to(logits.device)
    if not bool(token_mask.any()):
        return _zero_with_grad(logits)
    # Select the counted positions first (see module docstring), then work in float32.
    logp = F.log_softmax(logits[token_mask].float(), dim=-1)
    logp_ref = F.log_softmax(ref_logits.detach().to(logits.device)[token_mask].float(), dim=-1)
    p_ref = logp_ref.exp()
    # Where p_ref is exactly 0 (e.g. -inf reference logits) the term is 0; avoid 0 * inf = NaN.
    per_vocab = torch.where(p_ref > 0, p_ref * (logp_ref - logp), torch.zeros_like(logp))
    per_vocab = per_vocab * vocab_mask.to(logits.device)
    return per_vocab.sum(dim=-1).mean()


def kl_to_reference(logits: Tensor, ref_logits: Tensor, labels: Tensor) -> Tensor:
    """Mean over label positions of the full-vocabulary KL(p_ref || p_theta).

    Inputs are unshifted (B, T, V) logits and (B, T) labels; this is DMK with both masks all-True.
    """
    _check_logits_labels(logits, labels)
    _check_same_shape(logits, ref_logits)
    logits, shifted_labels, _ = shift_for_next_token(logits, labels)
    keep_all = torch.ones(logits.shape[-1], dtype=torch.bool, device=logits.device)
    return dual_masked_kl(logits, ref_logits[:, :-1], shifted_labels != IGNORE_INDEX, keep_all)


def ga_kl(logits: Tensor, ref_logits: Tensor, labels: Tensor, kl_weight: float = 1.0) -> Tensor:
    """GA+KL baseline: ``gradient_ascent + kl_weight * kl_to_reference``.

    As in the paper, the KL to the original model is taken on the same (forget) batch.
    """
    return gradient_ascent(logits, labels) + kl_weight * kl_to_reference(logits, ref_logits, labels)


def dmk_for_batch(
    logits: Tensor, ref_logits: Tensor, labels: Tensor, target_mask: Tensor, vocab_mask: Tensor
) -> Tensor:
    """DMK from unshifted causal-LM outputs.

    ``labels`` (B, T) is ``-100`` outside answers; ``target_mask`` (B, T) bool, aligned with
    ``input_ids``, is True on the target-phrase tokens, where K_S = 0 (the answer contradicts the
    original model on purpose). Both are shifted with the logits, then ``dual_masked_kl`` is called
    with ``token_mask = (labels != -100) & ~target_mask``.
    """
    _check_logits_labels(logits, labels)
    _check_same_shape(logits, ref_logits)
    _check_bool_mask("target_mask", target_mask, labels.shape)
    logits, shifted_labels, shifted_target = shift_for_next_token(logits, labels, target_mask)
    assert shifted_target is not None  # for the type checker: a mask was passed in
    token_mask = (shifted_labels != IGNORE_INDEX) & ~shifted_target.to(shifted_labels.device)
    return dual_masked_kl(logits, ref_logits[:, :-1], token_mask, vocab_mask)


def siu_loss(
    logits: Tensor,
    ref_logits: Tensor,
    labels: Tensor,
    target_mask: Tensor,
    vocab_mask: Tensor,
    alpha: float = 0.9,
    beta: float = 0.75,
    use_token_mask: bool = True,
    use_vocab_mask: bool = True,
) -> tuple[Tensor, dict[str, float]]:
    """SIU objective ``alpha * CE + beta * DMK`` on unshifted causal-LM outputs.

    Ablations: ``use_token_mask=False`` sets K_S = 1 on every answer position (target phrase
    included); ``use_vocab_mask=False`` sets K_V = 1 on the whole vocabulary. Returns the loss and
    ``{"ce": ..., "dmk": ...}`` as floats for logging.
    """
    if not use_token_mask:
        target_mask = torch.zeros_like(target_mask, dtype=torch.bool)
    if not use_vocab_mask:
        vocab_mask = torch.ones_like(vocab_mask, dtype=torch.bool)
    ce = cross_entropy(logits, labels)
    dmk = dmk_for_batch(logits, ref_logits, labels, target_mask, vocab_mask)
    loss = alpha * ce + beta * dmk
    return loss, {"ce": float(ce.detach()), "dmk": float(dmk.detach())}


def sequence_logprobs(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per row: the summed log-probability of its answer tokens, and how many there are.

    ``logits`` (B, T, V) and ``labels`` (B, T) are unshifted; returns ``(logp (B,), n_tokens (B,))``
    with ``logp = sum_t log p(labels[t] | < t)`` over the positions ``!= -100`` (0 for a row without
    any). Only the counted positions go through the softmax.
    """
    logits, labels, _ = shift_for_next_token(logits, labels)
    counted = labels != IGNORE_INDEX
    rows = counted.nonzero(as_tuple=True)[0]
    token_logp = F.log_softmax(logits[counted].float(), dim=-1).gather(-1, labels[counted][:, None])
    sums = torch.zeros(labels.shape[0], dtype=torch.float32, device=logits.device)
    sums = sums.index_add(0, rows.to(logits.device), token_logp.squeeze(-1))
    return sums, counted.sum(dim=1)


def npo_loss(logp: Tensor, ref_logp: Tensor, beta: float) -> Tensor:
    """Negative preference optimisation (Zhang et al. 2024, eq. 3): mean of ``-(2/beta) log sigmoid(-beta log(p/p_ref))``.

    ``logp``/``ref_logp`` (N,) are the summed answer log-probabilities of N forget sequences under the
    model and the original. At ``p = p_ref`` every term is ``(2/beta) log 2``; the gradient is GA's,
    weighted by how much of the answer's probability is still there, so it fades as the answer goes.
    """
    if logp.numel() == 0:
        return _zero_with_grad(logp)
    return -(2.0 / beta) * F.logsigmoid(-beta * (logp - ref_logp.detach())).mean()


def simnpo_loss(logp: Tensor, n_tokens: Tensor, beta: float, gamma: float) -> Tensor:
    """SimNPO (Fan et al. 2024, eq. 4): mean of ``-(2/beta) log sigmoid(-(beta/|y|) log p(y) - gamma)``.

    Reference-free and length-normalised: ``logp`` (N,) summed answer log-probabilities, ``n_tokens``
    (N,) their lengths, ``gamma`` the reward margin.
    """
    if logp.numel() == 0:
        return _zero_with_grad(logp)
    per_token = logp / n_tokens.clamp(min=1).to(logp.dtype)
    return -(2.0 / beta) * F.logsigmoid(-beta * per_token - gamma).mean()


def dpo_loss(
    chosen: Tensor, rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float
) -> Tensor:
    """DPO (Rafailov et al. 2023, eq. 7): mean of ``-log sigmoid(beta ((c - c_ref) - (r - r_ref)))``.

    Each argument is (N,): the summed answer log-probabilities of N pairs' preferred (``chosen``) and
    dispreferred (``rejected``) answers under the model and the original.
    """
    if chosen.numel() == 0:
        return _zero_with_grad(chosen)
    margin = (chosen - ref_chosen.detach()) - (rejected - ref_rejected.detach())
    return -F.logsigmoid(beta * margin).mean()


def hidden_mse(hidden: Tensor, target: Tensor, labels: Tensor) -> Tensor:
    """Mean squared difference between hidden states and a target, at the positions that predict an answer token.

    ``hidden`` (B, T, D) and ``labels`` (B, T) are unshifted; position ``t - 1`` predicts ``labels[t]``.
    ``target`` is (D,) (one direction for every position, RMU's forget term) or (B, T, D) (the
    original's hidden states, RMU's retain term; no gradient flows into it). The mean runs over the
    counted positions and the D features, as ``F.mse_loss`` does; no counted position gives a zero
    that keeps the graph.
    """
    counted = labels[:, 1:] != IGNORE_INDEX
    if not bool(counted.any()):
        return _zero_with_grad(hidden)
    selected = hidden[:, :-1][counted].float()
    goal = target.detach().float() if target.dim() == 1 else target.detach()[:, :-1][counted].float()
    return F.mse_loss(selected, goal.to(selected.device).expand_as(selected))


def _name_variants(name: str) -> list[str]:
    # A name occurs in text as written, at the start of a text or after a space. Lower-cased and
    # capitalised spellings are left out: their pieces are mostly generic ("r", "ix"), and a masked id
    # drops out of the KL at every position and out of the fluency perplexity.
    return [name, " " + name]


_SPACE_MARKERS = ("\u2581", "\u0120")  # SentencePiece's "▁" and byte-level BPE's "Ġ": a space before


def _piece_text(tokenizer: Any, token_id: int) -> str:
    """A token id as text, a leading space included (decoders drop a lone piece's "▁")."""
    text = tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    raw = tokenizer.convert_ids_to_tokens(token_id)
    if isinstance(raw, str) and raw.startswith(_SPACE_MARKERS) and not text[:1].isspace():
        text = " " + text
    return text


def _is_name_piece(text: str) -> bool:
    # Only whitespace, punctuation or symbols ("▁", "Ġ", "▁,", "."): a piece of any text, not of the
    # name. U+FFFD is one byte of a character split across pieces (byte-level BPE): the name's own.
    return any(ch == "\ufffd" or unicodedata.category(ch)[0] not in "ZPSC" for ch in text)


def name_piece_ids(tokenizer: Any, names: Sequence[str], vocab_size: int | None = None) -> list[int]:
    """The token ids of the names' own pieces, in order of first appearance (K_V's complement).

    Each name (and alias) is encoded with ``add_special_tokens=False`` as written and after a space.
    Left out: special tokens (``tokenizer.all_special_ids``), ids ``>= vocab_size`` (they cannot
    appear in the logits) and pieces that are only whitespace, punctuation or symbols (a lone "▁" or
    "Ġ", "▁,"), which occur in every text. Raises ``ValueError`` on an empty name.
    """
    special = set(tokenizer.all_special_ids)
    ids: dict[int, None] = {}
    for name in names:
        if not name or not name.strip():
            raise ValueError(f"names must be non-empty strings, got {name!r}")
        for variant in _name_variants(name.strip()):
            for token_id in tokenizer.encode(variant, add_special_tokens=False):
                if token_id in ids or token_id in special or token_id < 0:
                    continue
                if vocab_size is not None and token_id >= vocab_size:
                    continue
                if _is_name_piece(_piece_text(tokenizer, token_id)):
                    ids[token_id] = None
    return list(ids)


def masked_pieces(tokenizer: Any, names: Sequence[str], vocab_size: int | None = None) -> list[str]:
    """The pieces :func:`vocab_mask_for_names` masks, as text (a leading space marks a word start).

    A piece holding only part of a character (a byte of "ë") is shown as the tokenizer spells it.
    """
    pieces = []
    for token_id in name_piece_ids(tokenizer, names, vocab_size):
        text = _piece_text(tokenizer, token_id)
        pieces.append(str(tokenizer.convert_ids_to_tokens(token_id)) if "\ufffd" in text else text)
    return pieces


def vocab_mask_for_names(tokenizer: Any, names: Sequence[str], vocab_size: int) -> Tensor:
    """K_V as a bool (V,) tensor: False on the names' own pieces (:func:`name_piece_ids`), True elsewhere.

    The caller checks that the tokenizer can represent the names (e.g. no unknown token). Raises
    ``ValueError`` on an empty name.
    """
    mask = torch.ones(vocab_size, dtype=torch.bool)
    mask[torch.tensor(name_piece_ids(tokenizer, names, vocab_size), dtype=torch.long)] = False
    return mask
