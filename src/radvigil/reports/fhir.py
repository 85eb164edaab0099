"""A FHIR R4B transaction bundle: one preliminary DiagnosticReport and one Observation per finding.

Conditional create (``ifNoneExist`` on the prediction's identifier) makes a re-send idempotent:
the server creates the report once. Resource ids inside the bundle are ``urn:uuid`` values
derived from the prediction id. The patient is referenced only when the caller passes a
reference (the RIS's own, e.g. ``Patient?identifier=...``): radvigil stores no patient identity.
"""

from __future__ import annotations

import uuid

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation

from radvigil.reports.dicom_sr import finding_code
from radvigil.reports.facts import FindingFact, ResultFacts

IDENTIFIER_SYSTEM = "urn:radvigil:prediction"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
IMAGING_STUDY = "Diagnostic imaging study"
SYSTEMS = {"SCT": SNOMED}


def _urn(facts: ResultFacts, part: str) -> str:
    name = f"{IDENTIFIER_SYSTEM}:{facts.prediction_id}:{part}"
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"


def _coding(finding: FindingFact) -> dict:
    code = finding_code(finding.name)
    system = SYSTEMS.get(code.scheme_designator, f"urn:radvigil:codes:{code.scheme_designator}")
    return {"system": system, "code": code.value, "display": code.meaning}


def observation(facts: ResultFacts, finding: FindingFact, subject: str | None) -> Observation:
    """One finding: probability as the value, POS/NEG at the threshold, the threshold alongside."""
    return Observation(
        status="preliminary",
        code={"coding": [_coding(finding)], "text": f"Probability of {finding.name}"},
        subject={"reference": subject} if subject else None,
        valueQuantity={
            "value": finding.probability,
            "unit": "1",
            "system": "http://unitsofmeasure.org",
            "code": "1",
        },
        interpretation=[
            {"coding": [{"system": INTERPRETATION, "code": "POS" if finding.present else "NEG"}]}
        ],
        component=[
            {
                "code": {"text": "Operating threshold"},
                "valueQuantity": {"value": finding.threshold, "unit": "1"},
            }
        ],
        device={"display": f"{facts.model_name} {facts.model_version}"},
        note=[{"text": facts.warning}],
    )


def diagnostic_report(facts: ResultFacts, subject: str | None = None) -> DiagnosticReport:
    verdicts = "; ".join(
        f"{f.name}: {'present' if f.present else 'absent'} (p={f.probability:.3f})"
        for f in facts.findings
    )
    return DiagnosticReport(
        identifier=[{"system": IDENTIFIER_SYSTEM, "value": facts.prediction_id}],
        status="preliminary",
        code={
            "coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}]
        },
        subject={"reference": subject} if subject else None,
        result=[{"reference": _urn(facts, f.name)} for f in facts.findings],
        conclusion=f"{verdicts}. {facts.warning} "
        f"Algorithm: {facts.model_name} {facts.model_version}.",
    )


def transaction_bundle(facts: ResultFacts, subject: str | None = None) -> Bundle:
    """The report and its observations as one transaction with conditional create."""
    condition = f"identifier={IDENTIFIER_SYSTEM}|{facts.prediction_id}"
    entries = [
        {
            "fullUrl": _urn(facts, "report"),
            "resource": diagnostic_report(facts, subject),
            "request": {"method": "POST", "url": "DiagnosticReport", "ifNoneExist": condition},
        }
    ]
    for finding in facts.findings:
        entries.append(
            {
                "fullUrl": _urn(facts, finding.name),
                "resource": observation(facts, finding, subject),
                "request": {
                    "method": "POST",
                    "url": "Observation",
                    "ifNoneExist": f"{condition}-{finding.name}",
                },
            }
        )
    return Bundle(type="transaction", entry=entries)


def bundle_json(facts: ResultFacts, subject: str | None = None) -> str:
    """:func:`transaction_bundle` as FHIR JSON."""
    return transaction_bundle(facts, subject).model_dump_json(exclude_none=True)
