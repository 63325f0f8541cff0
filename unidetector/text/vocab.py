"""Vocabularies for ``unidet detect`` / :class:`unidetector.api.Detector`: built-in class-name lists
and the ways a user gives one.

A vocabulary file is one name per line, or a COCO/LVIS-style annotation ``.json`` (its categories by
id: ``lvis_v0.5_val.json`` goes with the official ``lvis_v0.5_clip_a+cname_rn50_manyprompt.npy``).

Built-in lists are package data under ``unidetector/text/vocabularies/`` (one name per line, in the
official category-id order): ``coco`` (80, mmdet ``CocoDataset.CLASSES``), ``objects365`` (Objects365
v2, 365, the annotation file's names, trailing spaces included: ``'Cigar/Cigarette '``, ``'Formula 1 '``,
``'Table Tennis '``) and ``lvis`` (LVIS v1, 1203, underscores as in the json = mmdet
``LVISV1Dataset.CLASSES``).
The names are the *display* names; :func:`text_names` gives what the text encoder sees (the official
cleaning of ``scripts/dump_clip_features_manyprompt.py``: commas dropped, ``+`` → space).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UnidetError

VOCAB_DIR = Path(__file__).resolve().parent / "vocabularies"
BUILTIN = {"coco": ("coco.txt", 80), "objects365": ("objects365_v2.txt", 365), "lvis": ("lvis_v1.txt", 1203)}


class VocabularyError(UnidetError, ValueError):
    """An empty, unreadable or unknown vocabulary."""


def clean_class_name(name: str) -> str:
    """The official cleaning: drop commas, ``+`` → space (underscores are kept)."""
    return name.replace(",", "").replace("+", " ")


def class_names_from_annotation(path) -> list:
    """Category names of a COCO/LVIS json, sorted by category id, cleaned."""
    try:
        cats = json.loads(Path(path).read_text(encoding="utf-8"))["categories"]
        return [clean_class_name(c["name"]) for c in sorted(cats, key=lambda c: c["id"])]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VocabularyError(f"{path}: not valid JSON ({e})") from None
    except (KeyError, TypeError) as e:
        raise VocabularyError(f"{path}: expected a COCO/LVIS json whose 'categories' have 'id' and 'name' "
                                 f"(missing {e})") from None


def class_names_from_file(path) -> list:
    """The names of a class-name file (:func:`unidetector.text.vocab.read_class_names`), cleaned."""
    return [clean_class_name(name.strip()) for name in read_class_names(path)]


def load_class_names(classes=None, ann=None, names_file=None) -> list:
    """Class names from exactly one source: a list (or ``"a,b,c"``), an annotation json, a text file."""
    given = [x is not None for x in (classes, ann, names_file)]
    if sum(given) != 1:
        raise VocabularyError("give exactly one of classes, ann, names_file")
    if ann is not None:
        names = class_names_from_annotation(ann)
    elif names_file is not None:
        names = class_names_from_file(names_file)
    else:
        items = classes.split(",") if isinstance(classes, str) else list(classes)
        names = [clean_class_name(n.strip()) for n in items if n.strip()]
    if not names:
        raise VocabularyError(f"no class names found in {ann or names_file or 'the class list'}")
    return names


def read_class_names(path) -> list:
    """The one reader of class-name files: one name per line; line ends stripped, other whitespace kept
    (official trailing spaces); blank lines skipped. An unreadable file is a :class:`VocabularyError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise VocabularyError(f"cannot read vocabulary file {path}: {e}") from None
    return [line.rstrip("\r\n") for line in text.split("\n") if line.strip()]


def _annotation_names(path: Path) -> list:
    """The category names of a COCO/LVIS-style annotation json, by category id (the row order of the
    official ``clip_embeddings/*.npy``), cleaned as the official embedding script does."""
    if not path.is_file():
        raise VocabularyError(f"cannot read vocabulary file {path}: not found")
    return class_names_from_annotation(path)


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
    names = read_class_names(path)
    if len(names) != count:
        raise VocabularyError(f"{path}: expected {count} class names, found {len(names)}")
    return names


#: ``--classes`` lists longer than this get the ``--vocab FILE`` tip in their errors.
LONG_CLASS_LIST = 20
VOCAB_FILE_TIP = ("names with commas go in double quotes ('\"red, dark star\",blue ring'); for long lists or "
                  "names with quotes, write one name per line to a file and pass --vocab FILE")


def parse_classes(text: str) -> list:
    """``'red star, "big, dark cat", blue ring'`` → ``['red star', 'big, dark cat', 'blue ring']``.

    CSV rules on one line: names separated by commas; a name with a comma goes in double quotes
    (``""`` inside quotes is a literal quote); spaces around a name (quoted or not) are dropped, and
    so are empty items. An unclosed or stray quote is a :class:`VocabularyError` suggesting
    ``--vocab FILE``.
    """
    text = str(text)
    if "\n" in text or "\r" in text:
        raise VocabularyError(f"the class list {_short(text)} contains a line break; {VOCAB_FILE_TIP}")
    names, i, n = [], 0, len(text)
    while i <= n:
        while i < n and text[i].isspace():
            i += 1
        if i < n and text[i] == '"':                      # quoted name: up to the closing quote
            buf, i = [], i + 1
            while True:
                if i >= n:
                    raise VocabularyError(f"the class list {_short(text)} has an unclosed double quote; "
                                          f"{VOCAB_FILE_TIP}")
                if text[i] == '"' and text[i + 1:i + 2] == '"':
                    buf.append('"')
                    i += 2
                elif text[i] == '"':
                    i += 1
                    break
                else:
                    buf.append(text[i])
                    i += 1
            rest = text.find(",", i)
            rest = n if rest < 0 else rest
            if text[i:rest].strip():
                raise VocabularyError(f"the class list {_short(text)}: {text[i:rest].strip()!r} follows the quoted "
                                      f"name {''.join(buf)!r} before the next comma; {VOCAB_FILE_TIP}")
            name = "".join(buf)
        else:                                             # plain name: up to the next comma
            rest = text.find(",", i)
            rest = n if rest < 0 else rest
            name = text[i:rest]
            if '"' in name:
                raise VocabularyError(f"class name {name.strip()!r} has a stray double quote (quote whole names: "
                                      f"'\"a, b\",c'); {VOCAB_FILE_TIP}")
        if name.strip():
            names.append(name.strip())
        i = rest + 1
    return names


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def name_key(name: str) -> str:
    """What makes two class names the same class: case and spacing ignored
    (``'Red  Star '`` and ``'red star'`` → ``'red star'``)."""
    return " ".join(str(name).split()).casefold()


def find_duplicates(names) -> list:
    """``[(first, other), ...]``: pairs of names that are equal up to case and spacing
    (:func:`name_key`), each duplicate paired with the first name of its group."""
    first, pairs = {}, []
    for n in names:
        k = name_key(n)
        if k in first:
            pairs.append((first[k], n))
        else:
            first[k] = n
    return pairs


def resolve_vocabulary(classes=None, vocab=None) -> list:
    """Class names from exactly one of ``classes`` (a list, or a comma-separated string with CSV
    quoting, :func:`parse_classes`) and ``vocab`` (a built-in name or a text file, one name per line).
    Raises :class:`VocabularyError` when the result is empty or has duplicates (names equal up to case
    and spacing, :func:`name_key`); the error names both."""
    if (classes is None) == (vocab is None):
        raise VocabularyError("give exactly one of --classes (comma-separated names) and --vocab "
                              f"({'|'.join(BUILTIN)}|FILE)")
    from_string = False
    if vocab is not None:
        if vocab in BUILTIN:
            names = builtin_vocabulary(vocab)
        elif str(vocab).lower().endswith(".json"):
            names = _annotation_names(Path(vocab))
        else:
            names = read_class_names(Path(vocab))
        source = f"built-in vocabulary {vocab!r}" if vocab in BUILTIN else f"vocabulary file {vocab}"
    else:
        from_string = isinstance(classes, str)
        names = parse_classes(classes) if from_string else [str(c) for c in classes if str(c).strip()]
        source = "the class list"
    if not names:
        raise VocabularyError(f"{source} is empty: give at least one class name")
    dups = find_duplicates(names)
    if dups:
        shown = "; ".join(f"{a!r} and {b!r}" for a, b in dups[:5]) + (f"; ... ({len(dups)} in all)"
                                                                       if len(dups) > 5 else "")
        tip = f"; {VOCAB_FILE_TIP}" if from_string and len(names) > LONG_CLASS_LIST else ""
        raise VocabularyError(f"{source} has duplicate class names (equal up to case and spacing): {shown}{tip}")
    return list(names)


def text_names(names) -> list:
    """What the text encoder encodes for each display name (official cleaning)."""
    return [clean_class_name(n) for n in names]
