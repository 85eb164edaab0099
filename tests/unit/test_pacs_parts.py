"""PACS building blocks without a network: SR/SC builders, derived UIDs, spool, outbox states."""

from __future__ import annotations

import copy
import io
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from prometheus_client import CollectorRegistry

from radvigil.errors import DeliveryError, InputError
from radvigil.pacs.metrics import PacsMetrics
from radvigil.pacs.outbox import DEAD_LETTER_RULE, Outbox, RetryPolicy
from radvigil.pacs.spool import DicomSpool, uid_key
from radvigil.pacs.worker import site_for
from radvigil.reports import facts_from_prediction
from radvigil.reports.dicom_sr import (
    ABSENT,
    PRESENT,
    build_sr,
    finding_code,
    probability_code,
    sr_bytes,
)
from radvigil.reports.secondary_capture import build_sc, sc_bytes
from radvigil.store import AlertStore, Database, upgrade_database
from radvigil.store.pacs import InstanceCreate, OutboxCreate, PacsStore


@pytest.fixture(scope="module")
def source(bundled: Path) -> pydicom.Dataset:
    return pydicom.dcmread(bundled / "dicom" / "RG1_chest_small_512.dcm")


def _facts(p: float = 0.7, version: str = "3", present: bool = True):
    return facts_from_prediction(
        "req-1",
        "chest-pneumonia",
        version,
        {"normal": 1 - p, "pneumonia": p},
        ["pneumonia"],
        ["pneumonia"] if present else [],
        {"pneumonia": 0.42},
    )


def test_sr_states_finding_probability_verdict_algorithm_and_warning(source) -> None:
    sr = hd.sr.srread(io.BytesIO(sr_bytes(source, _facts(0.25, present=False))))
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID
    assert sr.VerificationFlag == "UNVERIFIED" and sr.CompletionFlag == "PARTIAL"
    (group,) = sr.content.get_image_measurement_groups()
    assert group.finding_type == finding_code("pneumonia")
    assert group.get_measurements(name=probability_code("pneumonia"))[0].value == 0.25
    verdict = group.get_qualitative_evaluations(name=finding_code("pneumonia"))[0]
    assert verdict.value == ABSENT and verdict.value != PRESENT
    texts = {
        item.ConceptNameCodeSequence[0].CodeMeaning: item.TextValue
        for item in group[0].ContentSequence
        if item.ValueType == "TEXT"
    }
    assert texts["Algorithm Name"] == "chest-pneumonia" and texts["Algorithm Version"] == "3"
    ref = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert ref.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    (qualitative,) = [
        item
        for item in sr.ContentSequence
        if item.ValueType == "CONTAINER"
        and item.ConceptNameCodeSequence[0].CodeMeaning == "Qualitative Evaluations"
    ]
    assert "must be reviewed by a qualified clinician" in qualitative.ContentSequence[0].TextValue


def test_uids_repeat_for_the_same_version_and_change_with_a_new_one(source) -> None:
    first, again, newer = build_sr(source, _facts()), build_sr(source, _facts()), None
    newer = build_sr(source, _facts(version="4"))
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert first.SeriesInstanceUID == again.SeriesInstanceUID
    assert newer.SOPInstanceUID != first.SOPInstanceUID
    overlay = np.zeros((64, 64, 3), np.uint8)
    sc = build_sc(source, overlay, _facts())
    assert sc.SOPInstanceUID not in (first.SOPInstanceUID, source.SOPInstanceUID)
    assert sc.SOPInstanceUID == build_sc(source, overlay, _facts()).SOPInstanceUID


def test_sr_needs_the_source_uids(source) -> None:
    broken = copy.deepcopy(source)
    del broken.SOPInstanceUID
    with pytest.raises(InputError, match="SOPInstanceUID"):
        build_sr(broken, _facts())


def test_secondary_capture_burns_the_warning_in(source) -> None:
    overlay = np.full((200, 180, 3), 90, np.uint8)
    sc = pydicom.dcmread(io.BytesIO(sc_bytes(source, overlay, _facts())))
    assert sc.BurnedInAnnotation == "YES" and sc.PhotometricInterpretation == "RGB"
    assert sc.StudyInstanceUID == source.StudyInstanceUID
    banner = sc.pixel_array[: sc.Rows - 200 * sc.Columns // 180]
    assert (banner == [255, 255, 0]).all(axis=-1).any(), "yellow banner text"
    with pytest.raises(InputError, match="RGB"):
        build_sc(source, np.zeros((4, 4), np.uint8), _facts())


@pytest.mark.parametrize("builder", ["sr", "sc"])
def test_dciodvfy_finds_no_errors(source, tmp_path: Path, builder: str) -> None:
    data = (
        sr_bytes(source, _facts())
        if builder == "sr"
        else sc_bytes(source, np.zeros((64, 64, 3), np.uint8), _facts())
    )
    path = tmp_path / "x.dcm"
    path.write_bytes(data)
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    assert [ln for ln in result.stderr.splitlines() if ln.startswith("Error")] == []


def test_spool_names_hold_no_uid_and_settle_after_quiet(tmp_path: Path) -> None:
    spool = DicomSpool(tmp_path)
    item = spool.put(b"DICM", "1.2.3.4", "1.2.3.4.5", "PACS 1")
    assert "1.2.3.4" not in str(item.path) and item.study_key == uid_key("1.2.3.4")
    (study,) = spool.studies()
    assert study.instances[0].calling_ae == "PACS 1"
    assert spool.settled(5.0, now=study.last_arrival + 1) == []
    assert len(spool.settled(5.0, now=study.last_arrival + 6)) == 1
    spool.done(item)
    assert spool.studies() == [] and not (tmp_path / "incoming" / item.study_key).exists()


def test_site_for_calling_ae() -> None:
    assert site_for("PACS1", {"PACS1": "ward-3"}) == "ward-3"
    assert site_for("MY PACS", {}) == "MY-PACS"


def test_retry_policy_backs_off_to_a_cap_then_gives_up() -> None:
    policy = RetryPolicy(max_attempts=5, base_s=2.0, max_s=5.0)
    assert [policy.delay(n) for n in range(1, 6)] == [2.0, 4.0, 5.0, 5.0, None]


class FlakySender:
    """A sender that refuses the first ``failures`` objects, then takes them."""

    def __init__(self, failures: int) -> None:
        self.failures, self.sent = failures, []

    def send(self, path: Path) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise DeliveryError("PACS said 0xA700")
        self.sent.append(path.name)


def _outbox(tmp_path: Path, sender: FlakySender, attempts: int):
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_database(db)
    store, spool = PacsStore(db), DicomSpool(tmp_path / "spool")
    metrics = PacsMetrics(CollectorRegistry())
    name = spool.put_outgoing("1.2.9", b"sr bytes")
    store.record(
        InstanceCreate(
            sop_key="k", study_key="s", model_version="1", calling_ae="PACS", state="predicted"
        ),
        [
            OutboxCreate(
                prediction_id="req-1",
                model_name="m",
                model_version="1",
                kind="sr",
                destination="cstore",
                calling_ae="PACS",
                sop_instance_uid="1.2.9",
                file=name,
            )
        ],
    )
    outbox = Outbox(
        store, spool, {"cstore": sender}, RetryPolicy(attempts, 0.0, 0.0), metrics, AlertStore(db)
    )
    return outbox, store, spool, metrics, db


def test_outbox_retries_then_delivers_once_and_drops_the_file(tmp_path: Path) -> None:
    sender = FlakySender(failures=2)
    outbox, store, spool, metrics, _ = _outbox(tmp_path, sender, attempts=5)
    assert [outbox.deliver_due() for _ in range(4)] == [0, 0, 1, 0]
    assert sender.sent == ["1.2.9.dcm"]
    (entry,) = store.entries()
    assert entry.state == "delivered" and entry.attempts == 3 and entry.last_error is None
    assert not spool.outgoing_path(entry.file).exists()
    assert metrics.outbox.labels("delivered")._value.get() == 1


def test_outbox_dead_letters_with_alert_and_retry_requeues(tmp_path: Path) -> None:
    sender = FlakySender(failures=10)
    outbox, store, _, metrics, db = _outbox(tmp_path, sender, attempts=2)
    outbox.deliver_due()
    outbox.deliver_due()
    (entry,) = store.entries()
    assert entry.state == "dead" and entry.attempts == 2 and "0xA700" in entry.last_error
    assert metrics.dead_letters.labels("sr")._value.get() == 1
    (alert,) = AlertStore(db).list()
    assert alert.rule == DEAD_LETTER_RULE and alert.severity == "critical"
    assert store.retry() == 1 and store.counts()["pending"] == 1


def test_production_listener_needs_an_allow_list(tmp_path: Path) -> None:
    from radvigil.config import Settings
    from radvigil.errors import ConfigError
    from radvigil.pacs.node import PacsNode, senders_from

    production = Settings(
        home=tmp_path, env="production", audit_key="a real secret of at least 32 characters"
    )
    with pytest.raises(ConfigError, match="RADVIGIL_DICOM_ALLOWED_AES"):
        PacsNode(production, registry=None)  # refused before the registry is touched
    with pytest.raises(ConfigError, match="RADVIGIL_PACS_STOW_URL"):
        senders_from(Settings(home=tmp_path, pacs_send="stowrs"))
    assert senders_from(Settings(home=tmp_path)) == {}
