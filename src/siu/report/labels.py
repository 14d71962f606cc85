"""Readable names of the metrics, what their better direction means, and how the report groups them.

The keys and their directions come from :data:`siu.eval.metrics.METRICS`; this module only adds the
words a reader needs ("Generality EM (higher = more forgotten)") and the sections of the report.
"""

from __future__ import annotations

from siu.eval.metrics import METRICS

# key -> (name, what the better direction means for this metric)
NAMES: dict[str, tuple[str, str]] = {
    "efficacy_em": ("Efficacy EM, forget image", "more forgotten"),
    "generality_em": ("Generality EM, held-out images", "more forgotten"),
    "g_eval": ("G-Eval judge score", "more forgotten"),
    "c_dis": ("C-Dis, special-token KL", "further from the original"),
    "specificity": ("Specificity", "more kept"),
    "specificity_recognition": ("Other concepts recognised", "more kept"),
    "specificity_vqa": ("Generic VQA", "more kept"),
    "specificity_facts": ("Other concepts' facts", "more kept"),
    "fluency_ppl": ("Fluency perplexity", "more fluent"),
    "diversity": ("Diversity of answers", "more diverse"),
    "fact_retention": ("Own text facts kept", "more kept"),
    "mia_rouge_l": ("MIA ROUGE-L", "less memorised"),
    "mia_auc_min_k": ("MIA AUC, Min-K%", "less memorised"),
    "mia_auc_min_k_pp": ("MIA AUC, Min-K%++", "less memorised"),
    "mia_auc_loss": ("MIA AUC, loss", "less memorised"),
    "mia_auc_zlib": ("MIA AUC, zlib", "less memorised"),
    "jailbreak_multilingual": ("Named in other languages", "forgetting holds"),
    "jailbreak_multihop": ("Facts via multi-hop", "forgetting holds"),
    "attack_crop": ("Named after cropping", "forgetting holds"),
    "attack_flip": ("Named after mirroring", "forgetting holds"),
    "attack_blur": ("Named after blurring", "forgetting holds"),
    "attack_jpeg": ("Named after JPEG", "forgetting holds"),
    "attack_quant8": ("Named at 8-bit weights", "forgetting holds"),
    "attack_quant4": ("Named at 4-bit weights", "forgetting holds"),
    "attack_relearn": ("Named after relearning", "forgetting holds"),
    "attack_unseen_phrasing": ("Named, unseen phrasings", "forgetting holds"),
    "butterfly_pair": ("Partner named beside C", "more kept"),
    "butterfly_alone": ("Partner named alone", "more kept"),
}

# report section -> its metrics, in the order they are drawn and tabulated
GROUPS: dict[str, tuple[str, ...]] = {
    "Forgetting": ("efficacy_em", "generality_em", "g_eval", "c_dis"),
    "What must be kept": (
        "specificity",
        "specificity_recognition",
        "specificity_vqa",
        "specificity_facts",
        "fact_retention",
        "fluency_ppl",
        "diversity",
    ),
    "Membership inference": (
        "mia_rouge_l",
        "mia_auc_min_k",
        "mia_auc_min_k_pp",
        "mia_auc_loss",
        "mia_auc_zlib",
    ),
    "Jailbreaks and attacks": (
        "jailbreak_multilingual",
        "jailbreak_multihop",
        "attack_crop",
        "attack_flip",
        "attack_blur",
        "attack_jpeg",
        "attack_quant8",
        "attack_quant4",
        "attack_relearn",
        "attack_unseen_phrasing",
    ),
    "Butterfly effect (pair pictures)": ("butterfly_pair", "butterfly_alone"),
}
LOG_SCALE = frozenset({"fluency_ppl"})  # a wrecked model's perplexity reaches millions


def groups() -> dict[str, tuple[str, ...]]:
    """GROUPS, plus any metric eval has that no group names yet (so that none is ever left out)."""
    named = {k for keys in GROUPS.values() for k in keys}
    rest = tuple(k for k in METRICS if k not in named)
    return {**GROUPS, **({"Other metrics": rest} if rest else {})}


def better(key: str) -> str:
    """The better direction from METRICS, "higher" or "lower"; "" for a key eval does not declare."""
    return METRICS[key][0] if key in METRICS else ""


def name(key: str) -> str:
    return NAMES[key][0] if key in NAMES else key.replace("_", " ")


def direction(key: str) -> str:
    """The direction in words, "higher = more forgotten"; "higher = better" for a metric not named here."""
    way = better(key)
    if not way:
        return ""
    return f"{way} = {NAMES[key][1]}" if key in NAMES else f"{way} = better"


def label(key: str) -> str:
    """Name and direction, as in "Generality EM, held-out images (higher = more forgotten)"."""
    way = direction(key)
    return f"{name(key)} ({way})" if way else name(key)


def arrow(key: str) -> str:
    return {"higher": "↑", "lower": "↓"}.get(better(key), "")


def what(key: str) -> str:
    """eval's own one-line description of the metric."""
    return METRICS[key][1] if key in METRICS else ""
