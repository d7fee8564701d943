"""The lab's node image: a debootstrap rootfs (cached on the host) imported into an engine,
then the Dockerfile in images/node/ on top. No container registry is involved."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import docker
import docker.errors

from . import artifacts, names
from .errors import LabError
from .host import console, debian_mirror, require_binary, require_root, run_logged
from .paths import resource

BASE_REPO = "pptp-lab/base"
NODE_REPO = "pptp-lab/node"


def base_key() -> str:
    images = resource("images")
    return artifacts.input_key(
        artifacts.tree_files(images / "rootfs.sh", images / "node" / "packages.txt"),
        debian_mirror(), "bookworm")


def node_key() -> str:
    return artifacts.input_key(artifacts.tree_files(resource("images") / "node"), base_key())


def node_image_tag() -> str:
    return f"{NODE_REPO}:{node_key()}"


def base_tarball() -> Path:
    """The node base rootfs as a tar file, built with debootstrap when not cached."""
    key = base_key()

    def build(tmp: Path) -> None:
        require_root("building the node image")
        require_binary("debootstrap", "debootstrap")
        log = tmp.parent / f"node-{key}.log"
        rootfs = tmp / "rootfs"
        try:
            # `sh` explicitly: an installed copy's file modes are the packager's business.
            run_logged("node image: debootstrap", ["sh", str(resource("images") / "rootfs.sh"), "node",
                                                   str(rootfs), debian_mirror()], log)
            run_logged("node image: tar", ["tar", "-C", str(rootfs), "--numeric-owner", "-cf",
                                           str(tmp / "rootfs.tar"), "."], log)
        finally:
            subprocess.run(["rm", "-rf", str(rootfs)], check=False)

    return artifacts.cached_dir("node", key, build) / "rootfs.tar"


def _has(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure_node_image(client: docker.DockerClient) -> str:
    """Make sure the engine has the node image; return its tag. Loads only what is missing."""
    tag = node_image_tag()
    if _has(client, tag):
        return tag
    base = f"{BASE_REPO}:{base_key()}"
    if not _has(client, base):
        tar = base_tarball()
        start = time.monotonic()
        with console.status(f"importing {base} ({tar.stat().st_size >> 20} MB) into the engine"):
            try:
                client.api.import_image_from_file(str(tar), repository=BASE_REPO, tag=base_key())
            except docker.errors.APIError as exc:
                raise LabError(f"importing {tar} into the engine failed: {exc.explanation}") from exc
        if not _has(client, base):
            raise LabError(f"importing {tar} gave no image {base}: see the engine's log")
        console.print(f"[green]✓[/] imported {base} ({time.monotonic() - start:.0f}s)")
    start = time.monotonic()
    with console.status(f"building {tag} from images/node/Dockerfile"):
        try:
            client.images.build(path=str(resource("images") / "node"), tag=tag, buildargs={"BASE": base},
                                labels={names.IMAGE: "node"}, rm=True)
        except docker.errors.BuildError as exc:
            last = next((x.get("stream", x.get("error", "")) for x in reversed(list(exc.build_log))
                         if x.get("stream") or x.get("error")), "")
            raise LabError(f"building {tag} from images/node/Dockerfile failed: {str(last).strip()}") from exc
    console.print(f"[green]✓[/] built {tag} ({time.monotonic() - start:.0f}s)")
    return tag
