"""A real Orthanc PACS for tests: Debian's ``/usr/sbin/Orthanc`` on free loopback ports.

Started with a JSON config in a temp folder (DICOM + HTTP ports, the DICOMweb plugin, HTTP
authentication on), polled at ``GET /system`` until it answers, killed afterwards. Radvigil's
receiver is registered in ``DicomModalities`` as the modality ``radvigil`` so a test can ask
Orthanc to route a study to it (``POST /modalities/radvigil/store``), the way a site's auto-routing
rule would.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from radvigil.stack.processes import free_port

ORTHANC = Path("/usr/sbin/Orthanc")
PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
USER, PASSWORD = "radvigil-test", "orthanc-test-password"
START_TIMEOUT_S = 30.0


def dicomweb_plugin() -> Path:
    """The DICOMweb plugin's shared object from Debian's orthanc-dicomweb package."""
    for folder in PLUGIN_DIRS:
        found = sorted(folder.glob("libOrthancDicomWeb.so*")) if folder.is_dir() else []
        if found:
            return found[0]
    raise FileNotFoundError("libOrthancDicomWeb.so not found; apt-get install orthanc-dicomweb")


@dataclass
class Orthanc:
    """One Orthanc process with its own storage under ``root``; ``stop()`` kills it."""

    root: Path
    aet: str = "ORTHANC"
    radvigil: tuple[str, int] | None = None
    lua_scripts: tuple[Path, ...] = ()
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def auth(self) -> tuple[str, str]:
        return USER, PASSWORD

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=self.auth, timeout=30)

    def config(self) -> dict:
        modalities = {}
        if self.radvigil is not None:
            aet, port = self.radvigil
            modalities["radvigil"] = [aet, "127.0.0.1", port]
        return {
            "Name": "radvigil-test-orthanc",
            "StorageDirectory": str(self.root / "storage"),
            "IndexDirectory": str(self.root / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "DicomCheckCalledAet": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "DicomModalities": modalities,
            "DicomScuTimeout": 10,
            "Plugins": [str(dicomweb_plugin())],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "HttpDescribeErrors": True,
            "StableAge": 1,
            "LuaScripts": [str(p) for p in self.lua_scripts],
        }

    def start(self) -> None:
        """Write the config, start Orthanc and wait for ``GET /system``."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "orthanc.json"
        path.write_text(json.dumps(self.config(), indent=2))
        log = (self.root / "orthanc.log").open("ab")
        self.process = subprocess.Popen(
            [str(ORTHANC), "--logdir=" + str(self.root), str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/system", auth=self.auth, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"Orthanc did not answer /system in {START_TIMEOUT_S} s: {self.log()}")

    def stop(self) -> None:
        """Kill Orthanc (SIGKILL: an outage, not a shutdown) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def log(self) -> str:
        text = "".join(p.read_text(errors="replace") for p in self.root.glob("*.log*"))
        return text[-3000:]

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def series_of(self, study_uid: str) -> list[dict]:
        """Orthanc's series (with their main tags) of the study with this UID."""
        with self.client() as client:
            found = client.post(
                "/tools/find",
                json={"Level": "Study", "Query": {"StudyInstanceUID": study_uid}},
            ).json()
            series = []
            for study in found:
                series.extend(client.get(f"/studies/{study}/series").json())
            return series
