"""The VM guest's OCI runtime wrapper (images/vm/lab-runtime) and its network hook
(images/vm/lab-setkey), run for real with the host's sh and perl: the hook speaks dockerd's
libnetwork-setkey protocol on a unix socket, the wrapper points a bundle's hook at it."""
import json
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from tests import REPO

VM = REPO / "images" / "vm"
CID, CTL = "4f1c" * 16, "a1b2c3d4e5f6"
STATE = json.dumps({"ociVersion": "1.0.2", "id": CID, "status": "creating", "pid": 4242, "bundle": "/b"})


@pytest.fixture
def root():
    d = Path(tempfile.mkdtemp(prefix="sk", dir="/tmp"))  # a unix socket path has 108 octets at most
    (d / "libnetwork").mkdir()
    yield d
    shutil.rmtree(d)


def dockerd(root: Path, answer: bytes) -> tuple[threading.Thread, list[bytes]]:
    """dockerd's end of the setkey socket: reads one message, answers `answer`."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(root / "libnetwork" / f"{CTL}.sock"))
    srv.listen(1)
    got: list[bytes] = []

    def serve():
        conn, _ = srv.accept()
        with conn:
            got.append(conn.recv(4096))
            conn.sendall(answer)
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t, got


def setkey(root: Path, *args: str, state: str = STATE) -> subprocess.CompletedProcess:
    return subprocess.run(["perl", str(VM / "lab-setkey"), "libnetwork-setkey", *args], input=state,
                          capture_output=True, text=True, timeout=20)


def test_the_hook_tells_dockerd_the_containers_network_namespace(root):
    t, got = dockerd(root, b"success")
    r = setkey(root, f"-exec-root={root}", CID, CTL)
    t.join(5)
    assert r.returncode == 0, r.stderr
    assert json.loads(got[0]) == {"ContainerID": CID, "Key": "/proc/4242/ns/net"}


def test_the_hook_fails_with_dockerds_words_or_on_bad_input(root):
    t, _ = dockerd(root, b"failed to set key")
    r = setkey(root, f"-exec-root={root}", CID, CTL)
    t.join(5)
    assert r.returncode != 0 and "dockerd said: failed to set key" in r.stderr
    assert setkey(root, f"-exec-root={root}", CID, CTL).returncode != 0  # nobody listens
    assert "want CONTAINER-ID" in setkey(root, f"-exec-root={root}", CID).stderr
    assert "want CONTAINER-ID" in setkey(root, f"-exec-root={root}", "x; reboot", CTL).stderr
    assert "no pid" in setkey(root, f"-exec-root={root}", CID, CTL, state="{}").stderr


def test_the_wrapper_points_a_creates_hook_at_lab_setkey_and_passes_every_call_on(tmp_path):
    log = tmp_path / "crun.log"
    crun = tmp_path / "crun"
    crun.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    crun.chmod(0o755)
    wrapper = tmp_path / "lab-runtime"
    wrapper.write_text((VM / "lab-runtime").read_text().replace("/usr/bin/crun", str(crun)))
    wrapper.chmod(0o755)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    hooks = {"prestart": [{"path": "/proc/317/exe", "args": ["libnetwork-setkey", "-exec-root=/var/run/docker", CID, CTL]}],
             "poststop": [{"path": "/proc/317/exe", "args": ["other"]}]}
    config = {"ociVersion": "1.0.2", "process": {"args": ["sleep", "1"]}, "hooks": hooks}
    (bundle / "config.json").write_text(json.dumps(config, separators=(",", ":")))  # as Go writes it
    base = ["--root", "/run/crun", "--log", "/x/log.json", "--log-format", "json"]
    subprocess.run([str(wrapper), *base, "create", "--bundle", str(bundle), "--pid-file", "/x/pid", CID], check=True)
    written = json.loads((bundle / "config.json").read_text())
    assert written["hooks"]["prestart"] == [{"path": "/usr/local/sbin/lab-setkey", "args": hooks["prestart"][0]["args"]}]
    assert written["hooks"]["poststop"] == hooks["poststop"] and written["process"] == config["process"]
    before = (bundle / "config.json").read_text()
    subprocess.run([str(wrapper), *base, "start", CID], check=True)
    assert (bundle / "config.json").read_text() == before
    assert log.read_text().splitlines() == [" ".join([*base, "create", "--bundle", str(bundle), "--pid-file", "/x/pid", CID]),
                                            " ".join([*base, "start", CID])]
