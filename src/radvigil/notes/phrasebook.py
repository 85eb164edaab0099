"""Everything language-specific about a note, one phrasebook per language.

A new language is one more :class:`Phrasebook` registered in :data:`PHRASEBOOKS` (sentences,
band words, finding names and synonyms, the other findings a note must not name, jargon,
negation and assertion cues) plus the ``textstat`` language code for its readability formula;
the template, guards and rewrite prompts read only from the phrasebook.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from radvigil.errors import ConfigError
from radvigil.notes.facts import Band


@dataclass(frozen=True)
class Phrasebook:
    """The words and fixed sentences of patient notes in one language."""

    language: str
    textstat_lang: str
    intro: str
    found: str  # "{finding}" is replaced by the finding's name
    not_found: str  # "{findings}" is replaced by the names joined with ``join_or``
    band: str  # "{finding}" and "{band}"
    low_quality: str
    unusual_image: str
    review: str  # the "a clinician will review" sentence, required verbatim
    disclaimer: str  # the decision-support disclaimer, required verbatim
    footer: str  # "{version}"; appended after the body, never rewritten
    join_or: str
    band_words: Mapping[Band, str]
    finding_names: Mapping[str, str]
    # Every way of naming a finding, mapped to the finding (or to a concept no model assesses).
    finding_terms: Mapping[str, str]
    jargon: frozenset[str]
    overclaims: frozenset[str]  # diagnosis or certainty language a note must never use
    all_clear: frozenset[str]  # words that deny every finding ("normal"), wrong if one is found
    negations: frozenset[str]
    assertions: frozenset[str]
    number_words: frozenset[str]
    flag_cues: frozenset[str]  # a flagged image's caveat must keep one of these words
    months: frozenset[str] = field(default_factory=frozenset)

    def name(self, finding: str) -> str:
        return self.finding_names.get(finding, finding.replace("_", " "))


_OTHER = "other finding"
ENGLISH = Phrasebook(
    language="en",
    # "en-US", not "en_US": textstat then counts syllables with Pyphen's bundled dictionary;
    # for "en_*" it would download NLTK's CMU dictionary at run time, and radvigil never does.
    textstat_lang="en-US",
    intro="A computer program looked at your chest X-ray.",
    found="It flagged signs that could mean {finding}.",
    not_found="It did not find signs of {findings}.",
    band="It rates the chance of {finding} as {band}.",
    low_quality="The picture may not be clear enough, so the result is less sure.",
    unusual_image=(
        "The picture looks different from the ones the program learned from, "
        "so the result is less sure."
    ),
    review="A clinician will review this result and talk with you about it.",
    disclaimer="This note is not a diagnosis. The program only helps your care team.",
    footer="Program version: {version}.",
    join_or=" or ",
    band_words=MappingProxyType(
        {
            "very_low": "very low",
            "low": "low",
            "medium": "medium",
            "high": "high",
            "very_high": "very high",
        }
    ),
    finding_names=MappingProxyType(
        {
            "pneumonia": "pneumonia",
            "tuberculosis": "TB",
            "bacterial": "pneumonia caused by germs called bacteria",
            "viral": "pneumonia caused by a virus",
        }
    ),
    finding_terms=MappingProxyType(
        {
            "pneumonia": "pneumonia",
            "lung infection": "pneumonia",
            "chest infection": "pneumonia",
            "infection": "pneumonia",
            "tuberculosis": "tuberculosis",
            "tb": "tuberculosis",
            "pneumonia caused by germs called bacteria": "bacterial",
            "bacterial pneumonia": "bacterial",
            "bacteria": "bacterial",
            "bacterial": "bacterial",
            "pneumonia caused by a virus": "viral",
            "viral pneumonia": "viral",
            "virus": "viral",
            "viral": "viral",
            **dict.fromkeys(
                (
                    "cancer",
                    "tumor",
                    "tumour",
                    "nodule",
                    "mass",
                    "lump",
                    "fracture",
                    "broken",
                    "effusion",
                    "fluid",
                    "edema",
                    "oedema",
                    "heart failure",
                    "enlarged heart",
                    "cardiomegaly",
                    "pneumothorax",
                    "collapsed lung",
                    "covid",
                    "covid-19",
                    "coronavirus",
                    "flu",
                    "influenza",
                    "bronchitis",
                    "asthma",
                    "emphysema",
                    "copd",
                    "fibrosis",
                    "scarring",
                    "scar",
                    "lesion",
                    "sepsis",
                    "blood clot",
                    "embolism",
                ),
                _OTHER,
            ),
        }
    ),
    jargon=frozenset(
        {
            "opacity",
            "opacities",
            "consolidation",
            "infiltrate",
            "infiltrates",
            "radiograph",
            "radiographic",
            "pulmonary",
            "bilateral",
            "unilateral",
            "etiology",
            "aetiology",
            "parenchyma",
            "parenchymal",
            "pathology",
            "sensitivity",
            "specificity",
            "threshold",
            "probability",
            "calibrated",
            "calibration",
            "embedding",
            "classifier",
            "algorithm",
            "model",
            "ood",
            "out-of-distribution",
            "auc",
            "roc",
        }
    ),
    overclaims=frozenset(
        {
            "you have",
            "you do not have",
            "you don't have",
            "diagnosed",
            "diagnose",
            "definitely",
            "certainly",
            "for sure",
            "confirmed",
            "confirms",
            "proves",
            "guaranteed",
            "no need",
            "treatment",
            "antibiotics",
            "medicine",
        }
    ),
    all_clear=frozenset({"normal", "healthy", "clear lungs", "nothing wrong", "all clear"}),
    negations=frozenset(
        {"no", "not", "did not", "didn't", "does not", "doesn't", "without", "none", "nothing"}
    ),
    assertions=frozenset(
        {
            "found",
            "find",
            "finds",
            "flagged",
            "flags",
            "shows",
            "showed",
            "show",
            "signs",
            "sign",
            "detected",
            "detects",
            "has",
            "have",
            "saw",
            "sees",
            "see",
            "seen",
            "could mean",
            "may mean",
            "suggests",
        }
    ),
    number_words=frozenset(
        {
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "twenty",
            "thirty",
            "forty",
            "fifty",
            "sixty",
            "seventy",
            "eighty",
            "ninety",
            "hundred",
            "thousand",
            "percent",
            "per cent",
            "half",
            "twice",
            "%",
        }
    ),
    flag_cues=frozenset({"picture", "image", "photo"}),
    months=frozenset(
        {
            "january",
            "february",
            "march",
            "april",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
            "yesterday",
            "today",
            "tomorrow",
        }
    ),
)

PHRASEBOOKS: Mapping[str, Phrasebook] = MappingProxyType({"en": ENGLISH})


def get_phrasebook(language: str) -> Phrasebook:
    """The phrasebook of ``language``; the error lists the languages there are."""
    try:
        return PHRASEBOOKS[language]
    except KeyError:
        raise ConfigError(
            f"no note phrasebook for language {language!r}; available: {', '.join(PHRASEBOOKS)}"
        ) from None
