"""Noun phrases from captions: spaCy's ``en_core_web_sm`` when installed, else a built-in extractor.

The built-in extractor needs no model. It splits a caption at words that cannot be part of a
noun phrase (prepositions, verbs, conjunctions, pronouns), keeps the chunks that a determiner or
number introduces (or that start the caption), strips those words, and adds every vocabulary
name found inside a chunk by greedy longest match (so "red bicycle" also yields "bicycle").
Plurals map to a vocabulary name when their singular is one ("dogs" -> "dog").

>>> extract = BuiltinNounPhrases(["bicycle", "dog", "couch", "person"])
>>> extract("a man riding a red bicycle down a street")
['man', 'red bicycle', 'bicycle', 'street']
>>> extract("there is a dog sitting on a couch")
['dog', 'couch']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from sfs_core.vocabularies import normalize_label

NounPhraseExtractor = Callable[[str], list[str]]

DETERMINERS = frozenset(
    "a an the this these those some several many few two three four five six seven eight nine ten "
    "one another each every its his her their our my your".split()
)
BREAKS = frozenset(
    # prepositions and particles
    "on in at of with without down up near next to from by under over above below behind beside between "
    "into onto through across around along against toward towards inside outside off out for about like "
    "while during after before beneath underneath among via "
    # auxiliaries, common verbs, conjunctions, pronouns, adverbs
    "is are was were be been being has have had do does did can could will would "
    "and or but that which who whom whose where when there here it they them he she we you i "
    "very too also just so then than not no all both".split()
)
# Nouns that only frame the real object ("a close up of a cat", "a picture of a dog").
FRAMING = frozenset(
    "image picture photo photograph view close closeup shot front side top bottom middle background "
    "foreground couple pair group lot bunch piece kind type sort row number set blurry arafed araffe "
    "arafe araf there".split()
)
NOUNS_ENDING_IN_ING = frozenset(
    "building ceiling painting railing awning clothing ring king wing thing string spring swing "
    "pudding icing bedding lighting housing parking ping stuffing sibling duckling".split()
)
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def _is_break(word: str, vocabulary_words: frozenset[str]) -> bool:
    if word in BREAKS:
        return True
    is_gerund = word.endswith("ing") and len(word) > 4
    if is_gerund and word not in NOUNS_ENDING_IN_ING and word not in vocabulary_words:
        return True
    return word.endswith("ly") and len(word) > 4  # adverbs


class BuiltinNounPhrases:
    """Rule-based noun-phrase extractor guided by a vocabulary (see the module docstring).

    Args:
        vocabulary: known class names (normalised, may have several words).
        max_words: longest phrase kept (its last words, where the head noun is).
    """

    def __init__(self, vocabulary: Iterable[str] = (), max_words: int = 4) -> None:
        self.names = frozenset(normalize_label(n) for n in vocabulary if n)
        self.longest = max((len(n.split()) for n in self.names), default=1)
        self.words = frozenset(w for n in self.names for w in n.split())
        self.max_words = max_words

    def singular(self, word: str) -> str:
        """The vocabulary's singular of a plural word, else the word itself."""
        for cut, add in (("ies", "y"), ("es", ""), ("s", "")):
            if word.endswith(cut) and word[: -len(cut)] + add in self.names:
                return word[: -len(cut)] + add
        return {"people": "person", "men": "man", "women": "woman", "children": "child"}.get(word, word)

    def vocabulary_matches(self, words: Sequence[str]) -> list[tuple[int, str]]:
        """``(position, name)`` of vocabulary names in ``words``, greedy longest match left to right."""
        found, i = [], 0
        while i < len(words):
            for n in range(min(self.longest, len(words) - i), 0, -1):
                candidate = " ".join(list(words[i : i + n - 1]) + [self.singular(words[i + n - 1])])
                if candidate in self.names:
                    found.append((i, candidate))
                    i += n
                    break
            else:
                i += 1
        return found

    def chunks(self, words: Sequence[str]) -> list[tuple[int, str]]:
        """``(position, phrase)`` of the chunks a determiner, a number or the caption start
        introduces, without leading framing words; chunks whose head is a framing noun are dropped."""
        found: list[tuple[int, str]] = []
        start, introduced = 0, True

        def close(end: int) -> None:
            chunk = list(words[start:end])
            while chunk and chunk[0] in FRAMING:
                chunk.pop(0)
            if introduced and chunk and chunk[-1] not in FRAMING:
                head = chunk[-self.max_words :]
                found.append((end - len(head), " ".join(head[:-1] + [self.singular(head[-1])])))

        for i, word in enumerate(words):
            if word in DETERMINERS or word.isdigit():
                close(i)
                start, introduced = i + 1, True
            elif _is_break(word, self.words):
                close(i)
                start, introduced = i + 1, False
        close(len(words))
        return found

    def __call__(self, caption: str) -> list[str]:
        words = _WORD.findall(caption.lower())
        found = sorted(self.chunks(words) + self.vocabulary_matches(words), key=lambda item: item[0])
        return list(dict.fromkeys(phrase for _, phrase in found))


class SpacyNounPhrases:
    """spaCy noun chunks without determiners, plus each chunk's head lemma."""

    def __init__(self, model: str = "en_core_web_sm") -> None:
        import spacy

        self.nlp = spacy.load(model, disable=["ner"])

    def __call__(self, caption: str) -> list[str]:
        phrases: list[str] = []
        for chunk in self.nlp(caption).noun_chunks:
            words = [t for t in chunk if t.pos_ not in ("DET", "PRON", "NUM") and t.lower_ not in FRAMING]
            if not words:
                continue
            phrases.append(" ".join(t.lower_ for t in words[:-1]) + (" " if len(words) > 1 else "") + words[-1].lemma_.lower())
            phrases.append(chunk.root.lemma_.lower())
        return list(dict.fromkeys(p.strip() for p in phrases if p.strip() and p.strip() not in FRAMING))


def spacy_available(model: str = "en_core_web_sm") -> bool:
    """True when spaCy and ``model`` can be imported (without loading the model)."""
    import importlib.util

    return importlib.util.find_spec("spacy") is not None and importlib.util.find_spec(model) is not None


def make_noun_phrase_extractor(kind: str = "auto", vocabulary: Iterable[str] = ()) -> NounPhraseExtractor:
    """``spacy`` (requires ``en_core_web_sm``), ``builtin``, or ``auto``: spaCy when available."""
    if kind not in ("auto", "spacy", "builtin"):
        raise ValueError(f"noun_phrases must be auto, spacy or builtin, got '{kind}'")
    if kind == "spacy" or (kind == "auto" and spacy_available()):
        return SpacyNounPhrases()
    return BuiltinNounPhrases(vocabulary)
