"""Classes and groups in words, the same on every page."""
from __future__ import annotations

CLASS_OF_LABEL = {1: "positive", 0: "negative"}
LABEL_OF_CLASS = {v: k for k, v in CLASS_OF_LABEL.items()}


def label_text(label: int) -> str:
    return CLASS_OF_LABEL.get(int(label), str(label))


def group_name(group: dict) -> str:
    """{"label": 1, "skin_tone": "dark"} -> "label positive, skin_tone dark"."""
    parts = [f"label {label_text(group['label'])}" if "label" in group else ""]
    parts += [f"{k} {v}" for k, v in group.items() if k != "label"]
    return ", ".join(p for p in parts if p)
