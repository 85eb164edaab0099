"""A DICOM Comprehensive 3D SR (TID 1500 measurement report) of one prediction.

Per IHE AI Results the SR sits in the source study as a new series and references the source
image. Each finding of the task becomes one measurement group (TID 1501) holding the calibrated
probability, the operating threshold and a qualitative evaluation Present/Absent at that
threshold, with the algorithm's name and version; the decision-support warning is a TEXT item
under the report's Qualitative Evaluations. Nothing is verified by a person: the SR is marked
UNVERIFIED and PARTIAL, like a preliminary report.
"""

from __future__ import annotations

import io
import warnings

import highdicom as hd
from highdicom.sr import (
    AlgorithmIdentification,
    CodedConcept,
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    QualitativeEvaluation,
    SourceImageForMeasurementGroup,
    TrackingIdentifier,
)
from pydicom import Dataset
from pydicom.sr.codedict import codes

from radvigil.errors import InputError
from radvigil.reports.facts import FindingFact, ResultFacts
from radvigil.reports.uids import derived_uid

SCHEME = "99RADVIGIL"  # private coding scheme for concepts with no standard code
SERIES_NUMBER = 9901
MANUFACTURER = "radvigil"
# Standard codes of the findings radvigil's tasks name; others get a private code.
FINDING_CODES = {
    "pneumonia": CodedConcept("233604007", "SCT", "Pneumonia"),
    "effusion": CodedConcept("60046008", "SCT", "Pleural effusion"),
    "pneumothorax": CodedConcept("36118008", "SCT", "Pneumothorax"),
    "cardiomegaly": CodedConcept("8186001", "SCT", "Cardiomegaly"),
}
PRESENT = CodedConcept("52101004", "SCT", "Present")
ABSENT = CodedConcept("2667000", "SCT", "Absent")
CHEST_XRAY = CodedConcept("399208008", "SCT", "Plain chest X-ray")
UNITY = CodedConcept("1", "UCUM", "no units")
COMMENT = CodedConcept("121106", "DCM", "Comment")
QUALITATIVE = CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")


def finding_code(name: str) -> CodedConcept:
    """The coded concept of a finding class (SNOMED CT where known)."""
    known = FINDING_CODES.get(name.lower())
    if known is not None:
        return known
    return CodedConcept(f"RV-{name.upper()[:12]}", SCHEME, name.replace("_", " ").capitalize())


def probability_code(name: str) -> CodedConcept:
    return CodedConcept(f"RV-P-{name.upper()[:10]}", SCHEME, f"Probability of {name}")


def threshold_code(name: str) -> CodedConcept:
    return CodedConcept(f"RV-T-{name.upper()[:10]}", SCHEME, f"Operating threshold for {name}")


def sr_uids(source: Dataset, facts: ResultFacts) -> tuple[str, str]:
    """(series, instance) UIDs of the SR: same study, model and version -> same series."""
    version = (facts.model_name, facts.model_version)
    series = derived_uid(str(source.StudyInstanceUID), *version, "sr-series")
    return series, derived_uid(str(source.SOPInstanceUID), *version, "sr")


def _group(
    source: Dataset, facts: ResultFacts, finding: FindingFact
) -> MeasurementsAndQualitativeEvaluations:
    algorithm = AlgorithmIdentification(name=facts.model_name, version=facts.model_version)
    code = finding_code(finding.name)
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=derived_uid(str(source.SOPInstanceUID), facts.model_version, finding.name),
            identifier=f"{finding.name} ({facts.model_name} {facts.model_version})",
        ),
        finding_type=code,
        algorithm_id=algorithm,
        source_images=[SourceImageForMeasurementGroup.from_source_image(source)],
        measurements=[
            Measurement(
                name=probability_code(finding.name),
                value=finding.probability,
                unit=UNITY,
                algorithm_id=algorithm,
            ),
            Measurement(
                name=threshold_code(finding.name),
                value=finding.threshold,
                unit=UNITY,
                algorithm_id=algorithm,
            ),
        ],
        qualitative_evaluations=[
            QualitativeEvaluation(name=code, value=PRESENT if finding.present else ABSENT)
        ],
    )


def _warning_container(warning: str) -> hd.sr.ContainerContentItem:
    container = hd.sr.ContainerContentItem(
        name=QUALITATIVE, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    comment = hd.sr.TextContentItem(
        name=COMMENT, value=warning, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    container.ContentSequence = hd.sr.ContentSequence([comment])
    return container


def build_sr(source: Dataset, facts: ResultFacts) -> Dataset:
    """The SR dataset of ``facts`` for the source image ``source`` (its header suffices).

    Raises:
        InputError: the source lacks the UIDs an SR must reference.
    """
    for keyword in ("StudyInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not getattr(source, keyword, None):
            raise InputError(f"the source image has no {keyword}; no SR can reference it")
    observer = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=derived_uid(facts.model_name, facts.model_version, "device"),
            name=f"{facts.model_name} {facts.model_version}",
            manufacturer_name=MANUFACTURER,
            model_name=facts.model_name,
        ),
    )
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=observer),
        procedure_reported=CHEST_XRAY,
        imaging_measurements=[_group(source, facts, f) for f in facts.findings],
    )
    report[0].ContentSequence.append(_warning_container(facts.warning))
    series_uid, instance_uid = sr_uids(source, facts)
    with warnings.catch_warnings():  # highdicom judges the source's person names: not ours to fix
        warnings.filterwarnings("ignore", message=".*person name", category=UserWarning)
        return _document(source, report, series_uid, instance_uid, facts)


def _document(
    source: Dataset, report: MeasurementReport, series_uid: str, uid: str, facts: ResultFacts
) -> Comprehensive3DSR:
    return Comprehensive3DSR(
        evidence=[source],
        content=report[0],
        series_instance_uid=series_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=False,
        is_final=False,
        is_verified=False,
        series_description=f"AI result {facts.model_name} {facts.model_version}"[:64],
    )


def sr_bytes(source: Dataset, facts: ResultFacts) -> bytes:
    """:func:`build_sr` written as a DICOM file (preamble, file meta, explicit VR LE)."""
    buffer = io.BytesIO()
    build_sr(source, facts).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
