"""The eight emotion labels, in the one fixed order every model and message uses."""

LABELS: tuple[str, ...] = (
    "anger",
    "contempt",
    "disgust",
    "fear",
    "happiness",
    "neutrality",
    "sadness",
    "surprise",
)
NUM_CLASSES = len(LABELS)
INDEX: dict[str, int] = {name: i for i, name in enumerate(LABELS)}

# Spellings seen in public datasets (FER+ columns, the paper's Kaggle folders,
# FER2013) mapped onto ours.
ALIASES: dict[str, str] = {
    "angry": "anger",
    "contemptuous": "contempt",
    "disgusted": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "happy": "happiness",
    "neutral": "neutrality",
    "sad": "sadness",
    "surprised": "surprise",
    "suprise": "surprise",
}


def canonical(name: str) -> str | None:
    """Our label for ``name`` (case-insensitive, aliases allowed), or None."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in INDEX else None
