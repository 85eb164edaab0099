"""FHIR R4B bundle and HL7 ORU^R01 builders, validated by fhir.resources and the hl7 package."""

from __future__ import annotations

import json
from datetime import datetime

from fhir.resources.R4B.bundle import Bundle

from radvigil.reports import facts_from_prediction
from radvigil.reports.fhir import IDENTIFIER_SYSTEM, bundle_json
from radvigil.reports.hl7 import oru_r01, parsed


def _facts(present: bool = True):
    return facts_from_prediction(
        "req-42",
        "chest-pneumonia",
        "3",
        {"normal": 0.3, "pneumonia": 0.7},
        ["pneumonia"],
        ["pneumonia"] if present else [],
        {"pneumonia": 0.42},
    )


def test_fhir_bundle_is_a_valid_idempotent_preliminary_transaction() -> None:
    text = bundle_json(_facts(), subject="Patient?identifier=urn:ris|123")
    bundle = Bundle.model_validate_json(text)  # the library's own validation
    assert bundle.type == "transaction"
    report, obs = (e.resource for e in bundle.entry)
    assert report.status == "preliminary" and obs.status == "preliminary"
    assert report.result[0].reference == bundle.entry[1].fullUrl
    assert bundle.entry[0].request.ifNoneExist == f"identifier={IDENTIFIER_SYSTEM}|req-42"
    assert float(obs.valueQuantity.value) == 0.7 and obs.interpretation[0].coding[0].code == "POS"
    assert obs.code.coding[0].code == "233604007"
    assert "reviewed by a qualified clinician" in report.conclusion
    assert bundle_json(_facts(), subject="Patient?identifier=urn:ris|123") == text
    absent = json.loads(bundle_json(_facts(present=False)))
    assert absent["entry"][1]["resource"]["interpretation"][0]["coding"][0]["code"] == "NEG"
    assert "subject" not in absent["entry"][0]["resource"]


def test_hl7_oru_r01_parses_with_preliminary_status_and_flags() -> None:
    message = parsed(oru_r01(_facts(), datetime(2026, 12, 6, 12, 0, 0), patient_id="MRN|7"))
    assert str(message.segment("MSH")[9]) == "ORU^R01^ORU_R01"
    assert str(message.segment("OBR")[25]) == "P"
    numeric, coded = message.segments("OBX")
    assert str(numeric[5]) == "0.700000" and str(numeric[8]) == "A" and str(numeric[11]) == "P"
    assert str(coded[5]) == "52101004^Present^SCT"
    assert str(message.segment("PID")[3]) == "MRN\\F\\7"  # delimiters in data are escaped
    assert "reviewed by a qualified clinician" in str(message.segment("NTE")[3])
    absent = parsed(oru_r01(_facts(present=False), datetime(2026, 12, 6)))
    assert str(absent.segments("OBX")[0][8]) == "N"
