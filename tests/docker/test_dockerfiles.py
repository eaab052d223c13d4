"""The Docker files agree with each other and with the README (no Docker engine needed: static checks).

Both images install medgen from this repository with the same extras and use ``medgen`` as the
entrypoint; the CUDA image starts from an official ``pytorch/pytorch`` CUDA image; every
``docker build`` / ``docker run`` / ``docker compose`` line the README shows names a Dockerfile, image
or service that exists.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from medgen.versions import floors

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile.cpu", "cuda": DOCKER / "Dockerfile.cuda"}
COMPOSE = DOCKER / "compose.yaml"
README = ROOT / "README.md"

# The README's Docker section, line for line (these lines must appear in README.md as they are here).
README_DOCKER_LINES = [
    "## Docker",
    "docker build -f docker/Dockerfile.cpu -t medgen:cpu .",
    "docker build -f docker/Dockerfile.cuda -t medgen:cuda .",
    'docker run --rm -v "$PWD/data:/data" medgen:cpu info scan.nii.gz',
    'docker run --rm -v "$PWD/data:/data" medgen:cpu demo --out /data/medgen_demo',
    'docker run --rm --gpus all -v "$PWD/data:/data" medgen:cuda train /opt/medgen/configs/brain1mm_gan_gpu.yaml '
    "--device cuda",
    'docker run --rm -p 8888:8888 -v "$PWD/data:/data" --entrypoint jupyter medgen:cpu lab --ip=0.0.0.0 '
    "--no-browser --allow-root --notebook-dir=/opt/medgen",
    "docker compose -f docker/compose.yaml run --rm medgen demo --out /data/medgen_demo",
    "docker compose -f docker/compose.yaml up jupyter",
    "docker compose -f docker/compose.yaml run --rm medgen-cuda train /opt/medgen/configs/brain1mm_gan_gpu.yaml "
    "--device cuda",
]

# `docker run` options that take a value (the image is the first argument that is neither).
RUN_OPTIONS_WITH_VALUE = {
    "-v", "--volume", "-p", "--publish", "-e", "--env", "--env-file", "--entrypoint", "--name", "-w", "--workdir",
    "--gpus", "-u", "--user", "--network", "--shm-size", "--mount", "--platform", "--ipc",
}


def instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def pip_extras(command: str) -> set[str] | None:
    """Extras of the ``pip install`` of the repository itself (``"."`` / ``.[a,b]``) in a shell command."""
    for part in re.split(r"&&|;", command):
        tokens = shlex.split(part)
        if tokens[:2] != ["pip", "install"] and tokens[:3] != ["python", "-m", "pip"]:
            continue
        for token in tokens:
            match = re.fullmatch(r"\.(?:\[([^\]]*)\])?", token)
            if match:
                return {e.strip() for e in (match.group(1) or "").split(",") if e.strip()}
    return None


def readme_shell_lines(prefix: str) -> list[str]:
    """Lines of README's code blocks that start with ``prefix`` (e.g. ``"docker run"``)."""
    return [line.strip() for line in README.read_text().splitlines() if line.strip().startswith(prefix)]


def compose_services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def built_images() -> set[str]:
    """Image tags some README ``docker build`` line or compose service builds."""
    tags = set()
    for line in readme_shell_lines("docker build"):
        tokens = shlex.split(line, comments=True)
        tags.update(tokens[i + 1] for i, t in enumerate(tokens) if t in ("-t", "--tag"))
    tags.update(s["image"] for s in compose_services().values() if "build" in s and "image" in s)
    return tags


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_image_installs_medgen_from_the_repository(kind):
    steps = instructions(DOCKERFILES[kind])
    copied = {args.split()[0] for keyword, args in steps if keyword == "COPY"}
    assert {"pyproject.toml", "medgen"} <= copied, f"{kind}: the image must copy the repository's package"
    extras = [pip_extras(args) for keyword, args in steps if keyword == "RUN"]
    assert any(e is not None for e in extras), f"{kind}: no `pip install .[...]` of the repository"


def test_both_images_install_the_same_extras_as_the_readme_documents():
    per_image = {}
    for kind, path in DOCKERFILES.items():
        found = [pip_extras(args) for keyword, args in instructions(path) if keyword == "RUN"]
        per_image[kind] = next(e for e in found if e is not None)
    assert per_image["cpu"] == per_image["cuda"]
    docker_section = README.read_text().split("## Docker", 1)[-1]
    readme = re.findall(r'pip install "\.\[([^\]]*)\]"', docker_section)
    assert readme, 'README must say which extras the images install (pip install ".[...]")'
    assert {e.strip() for e in readme[0].split(",")} == per_image["cpu"]
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert per_image["cpu"] <= set(optional), "the images install extras pyproject.toml does not define"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_entrypoint_is_medgen(kind):
    entrypoints = [args for keyword, args in instructions(DOCKERFILES[kind]) if keyword == "ENTRYPOINT"]
    assert entrypoints, f"{kind}: no ENTRYPOINT"
    assert json.loads(entrypoints[-1]) == ["medgen"], "exec form, so `docker run IMAGE ARGS` runs `medgen ARGS`"


def test_cuda_image_starts_from_an_official_pytorch_cuda_image():
    bases = [args for keyword, args in instructions(DOCKERFILES["cuda"]) if keyword == "FROM"]
    assert len(bases) == 1
    assert re.fullmatch(r"pytorch/pytorch:\d+\.\d+(\.\d+)?-cuda\d+(\.\d+)*-cudnn\d+-(runtime|devel)", bases[0])


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_images_torch_meets_the_torch_floor(kind):
    """A base image's (or pinned) torch below pyproject's floor would be replaced by pip with a new
    multi-GB build, or, worse, kept vulnerable by a --no-deps install."""
    text = " ".join(args for keyword, args in instructions(DOCKERFILES[kind]) if keyword in ("FROM", "RUN"))
    found = re.findall(r"pytorch/pytorch:(\d+\.\d+(?:\.\d+)?)-|torch==([\d.]+)", text)
    versions = [a or b for a, b in found]
    assert versions, f"{kind}: no torch version in FROM or RUN"
    floor = floors()["torch"].specifier
    assert all(floor.contains(v) for v in versions), f"{kind}: torch {versions} outside {floor}"


def test_cpu_image_pins_the_torch_the_readme_installs():
    readme_pins = set(re.findall(r"torch==([\w.+]+)", README.read_text()))
    run = " ".join(args for keyword, args in instructions(DOCKERFILES["cpu"]) if keyword == "RUN")
    image_pins = set(re.findall(r"torch==([\w.+]+)", run))
    assert image_pins and image_pins <= readme_pins
    assert "download.pytorch.org/whl/cpu" in run, "the CPU image installs the CPU-only torch wheel"


def test_compose_services_build_from_the_dockerfiles_and_mount_data():
    services = compose_services()
    assert {"medgen", "jupyter", "medgen-cuda"} <= set(services)
    for name, service in services.items():
        assert "build" in service, f"service {name!r} must build its image (no registry holds medgen images)"
        assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert any(v.endswith(":/data") for v in service.get("volumes", [])), f"{name}: no data folder at /data"
    assert services["jupyter"]["entrypoint"][:2] == ["jupyter", "lab"]
    assert "8888:8888" in services["jupyter"]["ports"]


def test_readme_has_the_docker_section():
    lines = {line.strip() for line in README.read_text().splitlines()}
    missing = [line for line in README_DOCKER_LINES if line not in lines]
    assert not missing, "README.md lacks these lines of its Docker section:\n" + "\n".join(missing)


def test_readme_docker_build_lines_name_existing_dockerfiles():
    for line in readme_shell_lines("docker build"):
        tokens = shlex.split(line, comments=True)
        dockerfile = tokens[tokens.index("-f") + 1]
        assert (ROOT / dockerfile).is_file(), line
        assert tokens[-1] == ".", f"build from the repository root: {line}"


def test_readme_docker_run_lines_use_images_that_are_built():
    images = built_images()
    for line in readme_shell_lines("docker run"):
        tokens = shlex.split(line, comments=True)[2:]
        i = 0
        while tokens[i].startswith("-"):
            i += 2 if tokens[i] in RUN_OPTIONS_WITH_VALUE else 1
        assert tokens[i] in images, f"{line!r}: image {tokens[i]!r} is not built by any README/compose line"


def test_readme_docker_compose_lines_name_existing_services():
    services = compose_services()
    for line in readme_shell_lines("docker compose"):
        tokens = shlex.split(line, comments=True)[2:]
        assert tokens[:2] == ["-f", "docker/compose.yaml"], line
        rest = [t for t in tokens[2:] if not t.startswith("-")]
        command, service = rest[0], rest[1]
        assert command in {"run", "up", "build", "create", "start"}, line
        assert service in services, f"{line!r}: no service {service!r} in docker/compose.yaml"
