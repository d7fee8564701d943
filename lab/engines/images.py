"""The lab's node image: a debootstrap rootfs (cached on the host) imported into an engine,
then the Dockerfile in images/node/ on top. No container registry is involved.

One image per userland suite (lab.core.suites.USERLANDS); bookworm's keys, cache entry and tags
are the ones from before suites existed."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import docker
import docker.errors

from ..core import artifacts, names, suites
from ..core.errors import LabError
from ..core.host import check_suite, console, debian_mirror, require_binary, require_root, run_logged
from ..core.paths import resource

BASE_REPO = "pptp-lab/base"
NODE_REPO = "pptp-lab/node"


def base_key(suite: str = suites.DEFAULT) -> str:
    images = resource("images")
    return artifacts.input_key(
        artifacts.tree_files(images / "rootfs.sh", images / "node" / "packages.txt",
                             *suites.rootfs_inputs(images, suite)),
        debian_mirror(suite), suite)


def node_key(suite: str = suites.DEFAULT) -> str:
    return artifacts.input_key(artifacts.tree_files(resource("images") / "node"), base_key(suite))


def _tag(key: str, suite: str) -> str:
    """A tag's name part: the key, with the suite in front for all but the default."""
    return key if suite == suites.DEFAULT else f"{suite}-{key}"


def base_tag(suite: str = suites.DEFAULT) -> str:
    return f"{BASE_REPO}:{_tag(base_key(suite), suite)}"


def node_image_tag(suite: str = suites.DEFAULT) -> str:
    return f"{NODE_REPO}:{_tag(node_key(suite), suite)}"


def base_tarball(suite: str = suites.DEFAULT) -> Path:
    """The node base rootfs of `suite` as a tar file, built with debootstrap when not cached."""
    suites.check_userland(suite, "node image ")
    key = base_key(suite)
    name = suites.artefact("node", suite)

    def build(tmp: Path) -> None:
        require_root("building the node image")
        require_binary("debootstrap", "debootstrap")
        mirror = debian_mirror(suite)
        if suite != suites.DEFAULT:
            check_suite(mirror, suite)
        log = tmp.parent / f"{name}-{key}.log"
        rootfs = tmp / "rootfs"
        try:
            # `sh` explicitly: an installed copy's file modes are the packager's business.
            run_logged(f"node image{'' if suite == suites.DEFAULT else ' ' + suite}: debootstrap",
                       suites.rootfs_argv(resource("images"), "node", rootfs, mirror, suite), log)
            run_logged("node image: tar", ["tar", "-C", str(rootfs), "--numeric-owner", "-cf",
                                           str(tmp / "rootfs.tar"), "."], log)
        finally:
            subprocess.run(["rm", "-rf", str(rootfs)], check=False)

    return artifacts.cached_dir(name, key, build) / "rootfs.tar"


def _has(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure_node_image(client: docker.DockerClient, suite: str = suites.DEFAULT) -> str:
    """Make sure the engine has the node image of `suite`; return its tag. Loads only what
    is missing."""
    tag = node_image_tag(suites.check_userland(suite, "node image "))
    if _has(client, tag):
        return tag
    base = base_tag(suite)
    if not _has(client, base):
        tar = base_tarball(suite)
        start = time.monotonic()
        with console.status(f"importing {base} ({tar.stat().st_size >> 20} MB) into the engine"):
            try:
                client.api.import_image_from_file(str(tar), repository=BASE_REPO, tag=base.split(":", 1)[1])
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
