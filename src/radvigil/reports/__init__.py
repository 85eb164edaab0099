"""Result objects for hospital systems, built from a stored prediction and the model card.

Pure builders: each turns :class:`ResultFacts` (and the source image's header) into bytes or
JSON, with no network and no database; the PACS outbox delivers what they build.
"""

from radvigil.reports.facts import FindingFact, ResultFacts, facts_from_prediction
from radvigil.reports.uids import derived_uid

__all__ = ["FindingFact", "ResultFacts", "derived_uid", "facts_from_prediction"]
