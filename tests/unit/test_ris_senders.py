"""RIS destinations from settings, and how an HL7 ACK is judged (no network: parsed messages)."""

from __future__ import annotations

from pathlib import Path

import hl7
import pytest

from radvigil.config import Settings
from radvigil.errors import ConfigError, DeliveryError, DeliveryRejectedError
from radvigil.pacs.node import senders_from
from radvigil.pacs.ris import FhirSender, Hl7Sender, _check_ack

PRODUCTION = dict(env="production", audit_key="a real secret of at least 32 characters")


def test_fhir_and_hl7_destinations_come_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        fhir_url="https://ehr.example/fhir",
        fhir_token="token-1",
        fhir_timeout_seconds=5,
        hl7_host="ris.example",
        hl7_port=2600,
    )
    senders = senders_from(settings)
    assert senders == {
        "fhir": FhirSender("https://ehr.example/fhir", "token-1", 5.0),
        "hl7": Hl7Sender("ris.example", 2600, 30.0),
    }
    assert "token-1" not in repr(settings)  # a SecretStr: never printed with the settings


def test_fhir_token_is_read_from_its_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("from-a-file\n")
    monkeypatch.setenv("RADVIGIL_FHIR_TOKEN_FILE", str(tmp_path / "token"))
    settings = Settings(home=tmp_path, fhir_url="http://127.0.0.1/fhir")
    sender = senders_from(settings)["fhir"]
    assert isinstance(sender, FhirSender) and sender.token == "from-a-file"


def test_production_refuses_plain_http_for_fhir(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, fhir_url="http://ehr.example/fhir", **PRODUCTION)
    with pytest.raises(ConfigError, match="https:// RADVIGIL_FHIR_URL"):
        senders_from(settings)


def _ack(code: str, control: str = "req-1") -> hl7.Message:
    return hl7.parse(
        f"MSH|^~\\&|RIS||RADVIGIL||20261207||ACK^R01^ACK|9|P|2.5.1\rMSA|{code}|{control}"
    )


def test_hl7_ack_codes_decide_delivered_retried_or_dead() -> None:
    _check_ack(_ack("AA"), "req-1")
    _check_ack(_ack("CA"), "req-1")
    with pytest.raises(DeliveryRejectedError, match="MSA-1 AR"):
        _check_ack(_ack("AR"), "req-1")
    with pytest.raises(DeliveryError, match="MSA-1 AE") as retried:
        _check_ack(_ack("AE"), "req-1")
    assert not isinstance(retried.value, DeliveryRejectedError)
    with pytest.raises(DeliveryError, match="another message"):
        _check_ack(_ack("AA", control="req-2"), "req-1")
    with pytest.raises(DeliveryError, match="no MSA"):
        _check_ack(hl7.parse("MSH|^~\\&|RIS||RADVIGIL||20261207||ACK|9|P|2.5.1"), "req-1")
