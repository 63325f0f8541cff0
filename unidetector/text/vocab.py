"""Vocabularies for ``unidet detect`` / :class:`unidetector.api.Detector`: built-in class-name lists
and the ways a user gives one.

Built-in lists are package data under ``unidetector/text/vocabularies/`` (one name per line, in the
official category-id order): ``coco`` (80, mmdet ``CocoDataset.CLASSES``), ``objects365`` (Objects365
v2, 365, the annotation file's names, trailing spaces included: ``'Cigar/Cigarette '``, ``'Formula 1 '``,
``'Table Tennis '``) and ``lvis`` (LVIS v1, 1203, underscores as in the json = mmdet
``LVISV1Dataset.CLASSES``).
The names are the *display* names; :func:`text_names` gives what the text encoder sees (the official
cleaning of ``scripts/dump_clip_features_manyprompt.py``: commas dropped, ``+`` → space).
"""
from __future__ import annotations

from pathlib import Path

from .embeddings import clean_class_name
from ..errors import UnidetError

VOCAB_DIR = Path(__file__).resolve().parent / "vocabularies"
BUILTIN = {"coco": ("coco.txt", 80), "objects365": ("objects365_v2.txt", 365), "lvis": ("lvis_v1.txt", 1203)}


class VocabularyError(UnidetError, ValueError):
    """An empty, unreadable or unknown vocabulary."""


def _read_names(path: Path) -> list:
    """One name per line; line ends stripped, other whitespace kept (official trailing spaces);
    blank lines skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise VocabularyError(f"cannot read vocabulary file {path}: {e}") from None
    return [line.rstrip("\r\n") for line in text.split("\n") if line.strip()]


def builtin_vocabulary(name: str) -> list:
    """The class names of a built-in vocabulary (``coco``, ``objects365``, ``lvis``)."""
    if name not in BUILTIN:
        raise VocabularyError(f"unknown built-in vocabulary {name!r} (available: {', '.join(BUILTIN)})")
    fname, count = BUILTIN[name]
    path = VOCAB_DIR / fname
    if not path.is_file():
        raise VocabularyError(
            f"the built-in {name!r} vocabulary is not shipped with this installation ({path} missing): "
            f"write its {count} class names to a text file, one per line in category-id order, and pass "
            f"--vocab FILE (Python: classes=[...])")
    names = _read_names(path)
    if len(names) != count:
        raise VocabularyError(f"{path}: expected {count} class names, found {len(names)}")
    return names


def parse_classes(text: str) -> list:
    """``"red star, blue ring"`` → ``['red star', 'blue ring']`` (items stripped, empty ones dropped)."""
    return [c.strip() for c in str(text).split(",") if c.strip()]


def resolve_vocabulary(classes=None, vocab=None) -> list:
    """Class names from exactly one of ``classes`` (a list, or a comma-separated string) and ``vocab``
    (a built-in name or a text file, one name per line). Raises :class:`VocabularyError` when the
    result is empty or has duplicates."""
    if (classes is None) == (vocab is None):
        raise VocabularyError("give exactly one of --classes (comma-separated names) and --vocab "
                              f"({'|'.join(BUILTIN)}|FILE)")
    if vocab is not None:
        names = builtin_vocabulary(vocab) if vocab in BUILTIN else _read_names(Path(vocab))
        source = f"vocabulary {vocab!r}"
    else:
        names = parse_classes(classes) if isinstance(classes, str) else [str(c) for c in classes if str(c).strip()]
        source = "the class list"
    if not names:
        raise VocabularyError(f"{source} is empty: give at least one class name")
    seen, dups = set(), []
    for n in names:
        if n in seen:
            dups.append(n)
        seen.add(n)
    if dups:
        raise VocabularyError(f"{source} has duplicate class names: {sorted(set(dups))}")
    return list(names)


def text_names(names) -> list:
    """What the text encoder encodes for each display name (official cleaning)."""
    return [clean_class_name(n) for n in names]
