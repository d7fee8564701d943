"""`pptp-lab init [DIR]`: a starter for someone else's repository. A small topology with
expectations, a pytest file using the plugin's `lab` fixture, and CI examples (inactive
until copied: a CI file written straight to .gitlab-ci.yml would change someone's pipeline)."""
from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import LabError

TOPOLOGY = """\
# A starter lab (written by `pptp-lab init`): one PPTP server and one client on one network.
#   pptp-lab test topology.yaml   brings it up, checks `expect:` on the real tunnel and the
#                                 capture, and writes runs/<lab>/<run-id>/junit.xml and report.html
#   pytest                        runs test_lab.py, whose `lab` fixture brings it up
# Schema: `pptp-lab schema`. Larger layouts: `pptp-lab up default` (firewall, NAT, intranet).
name: starter
description: one PPTP server and one client on one network
networks:
  lan: {subnet: 203.0.113.0/24}
nodes:
  vpn:
    kind: pptp-server
    interfaces: {lan: 203.0.113.10}
    pptp_server:
      local_ip: 172.30.0.1
      remote_ip: 172.30.0.10-20
      users:
        - {name: alice, secret: alice-secret}
  client:
    kind: pptp-client
    interfaces: {lan: 203.0.113.20}
    pptp_client: {server: 203.0.113.10, user: alice, secret: alice-secret}
expect:
  clients:
    client: {tunnel: up, reach: [172.30.0.1]}
"""

TEST = '''\
"""A starter test (written by `pptp-lab init`). pptp-lab's pytest plugin brings the topology
up for this module (tunnels dialled, every segment captured) and down after it; captures
are kept in runs/ only when a test failed."""
import pytest

pytestmark = pytest.mark.topology("topology.yaml")  # relative to this file


def test_the_client_gets_a_tunnel_and_reaches_the_server_through_it(lab):
    state, local, peer = lab.tunnel("client")
    assert state == "up" and peer == "172.30.0.1", (state, local, peer)
    lab.ping("client", "172.30.0.1")


def test_the_capture_shows_a_complete_session(lab):
    (s,) = [s for s in lab.sessions(client="203.0.113.20") if not s.gre_only]
    assert s.phase == "data", s.verdict  # IPCP done: the tunnel is up
'''

GITLAB = """\
# EXAMPLE, untested by pptp-lab: copy into your .gitlab-ci.yml and adapt.
# Needs a Linux runner where the job is root (a shell runner, or the Docker executor with
# privileged = true). With /dev/kvm (passed into the job's container) the VM boots fast;
# without it QEMU emulates (TCG: slow). On a runner whose kernel has PPP (ppp_generic,
# ppp_mppe, nf_conntrack_pptp) and a Docker engine, PPTP_LAB_ENGINE=local skips the VM.
# The VM disk and node image are built once (debootstrap, about 3 minutes) and cached.
pptp-lab:
  image: debian:bookworm
  variables:
    PPTP_LAB_CACHE: "$CI_PROJECT_DIR/.cache/pptp-lab"
    PPTP_LAB_STATE: "$CI_PROJECT_DIR/.state/pptp-lab"
  cache:
    key: pptp-lab-vm
    paths: [.cache/pptp-lab]
  before_script:
    - apt-get update -q
    - apt-get install -y -q --no-install-recommends python3-venv qemu-system-x86 qemu-utils debootstrap e2fsprogs
    # pptp-lab from your package index, or a wheel you built from its checkout (pip wheel .)
    - python3 -m venv /opt/venv && /opt/venv/bin/pip install -q pptp-lab pytest
    - /opt/venv/bin/pptp-lab doctor
  script:
    - /opt/venv/bin/pptp-lab test topology.yaml
    - /opt/venv/bin/python -m pytest -v
  after_script:
    - /opt/venv/bin/pptp-lab vm down || true
  artifacts:
    when: always
    paths: [runs/]          # pcaps hold MS-CHAPv2 handshakes: use test secrets only
    reports:
      junit: runs/*/*/junit.xml
"""

GITHUB = """\
# EXAMPLE, untested by pptp-lab: copy to .github/workflows/pptp-lab.yml and adapt.
# The VM uses /dev/kvm when the runner offers it; elsewhere QEMU emulates (TCG: slow).
# The VM disk and node image are built once (debootstrap, as root) and cached. The runner's
# apt sources are Ubuntu's, so the Debian mirror to build from is set here.
name: pptp-lab
on: [push, pull_request]
jobs:
  lab:
    runs-on: ubuntu-latest
    env:
      PPTP_LAB_CACHE: ${{ github.workspace }}/.cache/pptp-lab
      PPTP_LAB_STATE: ${{ github.workspace }}/.state/pptp-lab
      PPTP_LAB_MIRROR: http://deb.debian.org/debian
    steps:
      - uses: actions/checkout@v4
      - uses: actions/cache@v4
        with:
          path: .cache/pptp-lab
          key: pptp-lab-vm-${{ runner.os }}
      - name: KVM for the VM, when the runner has it
        run: |
          if [ -e /dev/kvm ]; then sudo chmod 666 /dev/kvm; fi
      - run: >-
          sudo apt-get update -q && sudo apt-get install -y -q --no-install-recommends
          qemu-system-x86 qemu-utils debootstrap debian-archive-keyring e2fsprogs
      # pptp-lab from your package index, or a wheel you built from its checkout (pip wheel .)
      - run: python3 -m venv .venv && .venv/bin/pip install -q pptp-lab pytest
      - run: sudo -E .venv/bin/pptp-lab doctor
      - run: sudo -E .venv/bin/pptp-lab test topology.yaml
      - run: sudo -E .venv/bin/python -m pytest -v
      - name: Stop the VM; give the cache and runs/ (root's, owner-only) back to the runner user
        if: always()
        run: |
          sudo -E .venv/bin/pptp-lab vm down || true
          sudo chown -R "$(id -u):$(id -g)" .cache runs || true
      - if: always()
        uses: actions/upload-artifact@v4
        with:
          name: pptp-lab-runs
          path: runs/
"""

FILES = {
    "topology.yaml": TOPOLOGY,
    "test_lab.py": TEST,
    "ci-examples/gitlab-ci.yml": GITLAB,
    "ci-examples/github-workflow.yml": GITHUB,
}


def write(dest: Path) -> list[Path]:
    """Write the starter into dest; nothing at all when one of its files exists already."""
    targets = [dest / rel for rel in FILES]
    for path in targets:
        if path.exists() or path.is_symlink():
            raise LabError(f"{path} exists: pptp-lab init overwrites nothing (remove it or pick another DIR)")
    for path, text in zip(targets, FILES.values()):
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: a file that appeared meanwhile is still not overwritten.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise LabError(f"{path} exists: pptp-lab init overwrites nothing") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    return targets
