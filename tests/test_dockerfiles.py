"""The container images: docker/worker.Dockerfile and docker/service.Dockerfile.

No container engine runs here, so the Dockerfiles are parsed (a small parser below: instructions,
line continuations, flags, exec form) and checked against the repository and the code that runs
them: bases pinned, a non-root final user matching the pods' uid, COPY sources present in the build
context (.dockerignore), CUDA torch and no weights in the worker, entrypoints naming real
sub-commands, ports equal to the CLI defaults and the operator's, and a service image whose
requirements are enough to import the gateway and operator without the worker's ML stack.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
WORKER = DOCKER / "worker.Dockerfile"
SERVICE = DOCKER / "service.Dockerfile"
SERVICE_REQUIREMENTS = DOCKER / "service-requirements.txt"
DOCKERFILES = [WORKER, SERVICE]

WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".bin", ".pt", ".pth", ".gguf")
# pyproject dependencies only the worker needs; the service image must do without them.
WORKER_ONLY = {"torch", "torchsde", "diffusers", "transformers", "accelerate", "safetensors"}
CONTEXT_LIMIT_BYTES = 20 * 1024 * 1024


# -- a small Dockerfile parser ---------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper case
    flags: dict[str, str]  # --from=wheel -> {"from": "wheel"}; --mount=... keeps its raw value
    args: str  # the rest, continuations joined
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form ENTRYPOINT/CMD/COPY, else None (shell form)."""
        try:
            value = json.loads(self.args)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_instructions(text: str) -> list[Instruction]:
    """Instructions with ``\\`` continuations joined; comment lines (also inside them) dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # blank lines and comments, also inside a continuation
        if not pending:
            start = number
        continued = line.endswith("\\")
        pending.append(line[:-1].strip() if continued else line)
        if continued:
            continue
        keyword, _, rest = " ".join(pending).partition(" ")
        pending = []
        flags: dict[str, str] = {}
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        instructions.append(Instruction(keyword.upper(), flags, rest, start))
    assert not pending, "the Dockerfile ends inside a line continuation"
    return instructions


def parse_text(text: str, name: str = "Dockerfile") -> list[Stage]:
    stages: list[Stage] = []
    for instruction in parse_instructions(text):
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            assert len(words) in (1, 3), f"{name}:{instruction.line}: FROM {instruction.args!r}"
            stage_name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], stage_name))
        else:
            assert stages, f"{name}:{instruction.line}: {instruction.keyword} before any FROM"
            stages[-1].instructions.append(instruction)
    return stages


def parse_stages(path: Path) -> list[Stage]:
    return parse_text(path.read_text(encoding="utf-8"), path.name)


def arg_defaults(stage: Stage) -> dict[str, str]:
    return {
        name: value
        for instruction in stage.all("ARG")
        for name, _, value in [instruction.args.partition("=")]
    }


def env_of(stage: Stage) -> dict[str, str]:
    """ENV key=value pairs (values without quotes or spaces, which is all these files use)."""
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for pair in instruction.args.split():
            key, equals, value = pair.partition("=")
            assert equals, f"ENV line {instruction.line}: use the KEY=value form"
            env[key] = value.strip('"')
    return env


def expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], m[0]), text)


# -- .dockerignore ------------------------------------------------------------------------------


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str], str]]:
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        patterns.append((negated, re.compile(regex + r"\Z"), pattern))
    return patterns


IGNORE = _ignore_patterns()


def ignored(relative: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders wins."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negated, regex, _ in IGNORE:
        if any(regex.match(prefix) for prefix in prefixes):
            result = not negated
    return result


def context_files() -> list[Path]:
    """The files `docker build .` sends from the repository root, given .dockerignore."""
    exceptions = [pattern for negated, _, pattern in IGNORE if negated]
    files = []
    for folder, dirs, names in os.walk(ROOT):
        relative_folder = Path(folder).relative_to(ROOT).as_posix()
        relative_folder = "" if relative_folder == "." else relative_folder + "/"
        # Skip folders left out whole, unless an exception pattern reaches inside them.
        dirs[:] = [
            d
            for d in dirs
            if not ignored(relative_folder + d)
            or any(p.startswith(relative_folder + d + "/") or p.startswith("**") for p in exceptions)
        ]
        files += [Path(folder) / n for n in names if not ignored(relative_folder + n)]
    return files


# -- tests ------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=DOCKERFILES, ids=lambda p: p.name)
def dockerfile(request: pytest.FixtureRequest) -> Path:
    return request.param


def test_parser_handles_continuations_flags_and_comments() -> None:
    text = "FROM a:1 AS b\n# note\nRUN --mount=type=bind,from=b,target=/w \\\n    echo 1 \\\n# inside\n && echo 2\n"
    [run] = parse_text(text)[0].instructions
    assert run.keyword == "RUN" and run.flags == {"mount": "type=bind,from=b,target=/w"}
    assert run.args == "echo 1 && echo 2"


def test_every_base_is_pinned(dockerfile: Path) -> None:
    stages = parse_stages(dockerfile)
    names: set[str] = set()
    for stage in stages:
        if stage.image in names:
            continue  # an earlier stage
        assert "$" not in stage.image, f"{dockerfile.name}: FROM {stage.image}: spell the base out, no ARG"
        image, _, digest = stage.image.partition("@")
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
        assert tag or digest, f"{dockerfile.name}: FROM {stage.image} has no tag: pin one"
        if not digest:
            assert tag != "latest" and re.search(r"\d+\.\d+", tag), (
                f"{dockerfile.name}: FROM {stage.image}: pin a versioned tag, not {tag!r}"
            )
        if stage.name:
            names.add(stage.name)


def test_final_user_is_the_pods_non_root_uid(dockerfile: Path) -> None:
    from sdxlpool.operator.desired.pods import RUN_AS

    final = parse_stages(dockerfile)[-1]
    users = final.all("USER")
    assert users, f"{dockerfile.name}: the final stage sets no USER, so it runs as root"
    user, _, group = users[-1].args.partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it; the same uid the operator's pods ask for.
    assert user.isdigit() and int(user) != 0, f"{dockerfile.name}: USER {users[-1].args}: use a non-zero uid"
    assert int(user) == RUN_AS and (not group or int(group) == RUN_AS)


def test_copy_sources_exist_and_are_in_the_build_context(dockerfile: Path) -> None:
    stages = parse_stages(dockerfile)
    for index, stage in enumerate(stages):
        earlier = {s.name for s in stages[:index] if s.name}
        for instruction in stage.all("RUN"):
            mount = instruction.flags.get("mount", "")
            source_stage = dict(p.partition("=")[::2] for p in mount.split(",")).get("from") if mount else None
            assert source_stage is None or source_stage in earlier, f"line {instruction.line}: no stage {source_stage}"
        for instruction in stage.all("COPY") + stage.all("ADD"):
            assert instruction.keyword == "COPY", f"{dockerfile.name}:{instruction.line}: use COPY, not ADD"
            words = instruction.exec_form() or instruction.args.split()
            sources = words[:-1]
            if "from" in instruction.flags:
                assert instruction.flags["from"] in earlier, f"line {instruction.line}: --from names no earlier stage"
                continue
            for source in sources:
                path = ROOT / source
                assert path.exists(), f"{dockerfile.name}:{instruction.line}: COPY {source}: no such file in the repo"
                relative = path.relative_to(ROOT).as_posix()
                assert not ignored(relative), f"COPY {source}: .dockerignore leaves it out of the build context"
                if path.is_dir():
                    inside = [f for f in path.rglob("*.py") if not ignored(f.relative_to(ROOT).as_posix())]
                    assert inside, f"COPY {source}: .dockerignore leaves out every Python file in it"


def test_build_context_is_small_and_has_no_weights() -> None:
    files = context_files()
    relative = sorted(f.relative_to(ROOT).as_posix() for f in files)
    assert "pyproject.toml" in relative and "sdxlpool/cli.py" in relative
    assert not [f for f in relative if f.endswith(WEIGHT_SUFFIXES)], "model weights in the build context"
    assert not [f for f in relative if f.startswith((".venv/", ".git/", "tests/", "benchmarks/"))]
    assert not [f for f in relative if "__pycache__" in f]
    size = sum(f.stat().st_size for f in files)
    assert size < CONTEXT_LIMIT_BYTES, f"build context is {size / 1e6:.1f} MB"


def test_worker_installs_torch_from_the_cuda_index_matching_its_base() -> None:
    final = parse_stages(WORKER)[-1]
    variables = arg_defaults(final)
    installs = [expand(i.args, variables) for i in final.all("RUN") if "pip install" in i.args and "torch" in i.args]
    cuda_index = [re.search(r"--index-url\s+\"?https://download\.pytorch\.org/whl/cu(\d+)", run) for run in installs]
    found = [m for m in cuda_index if m]
    assert found, "the worker must install torch from PyTorch's CUDA index (--index-url .../whl/cuXYZ)"
    base = re.match(r"nvidia/cuda:(\d+)\.(\d+)", final.image)
    assert base, f"the worker's runtime base should be an nvidia/cuda image, not {final.image}"
    assert found[0][1] == base[1] + base[2], f"torch index cu{found[0][1]} vs base CUDA {base[1]}.{base[2]}"
    # The sdxlpool install must not replace the CUDA torch with PyPI's.
    later = [run for run in installs if "sdxlpool" in run]
    assert later and all("torch==" in run or "--constraint" in run or "-c " in run for run in later)


def test_worker_never_bakes_in_weights() -> None:
    for stage in parse_stages(WORKER):
        for instruction in stage.all("COPY") + stage.all("ADD"):
            words = instruction.exec_form() or instruction.args.split()
            assert not [w for w in words[:-1] if w.endswith(WEIGHT_SUFFIXES)], f"line {instruction.line} copies weights"
        for instruction in stage.all("RUN"):
            assert not re.search(r"hf download|huggingface-cli|snapshot_download|hf_hub_download|curl|wget",
                                 instruction.args), f"line {instruction.line} downloads at build time"
        assert not stage.all("VOLUME"), "no VOLUME: the operator mounts /models itself"


def test_worker_environment_fits_the_operators_pods() -> None:
    """Runtime writes under /tmp (the pods' only writable path); the `hf download` init containers,
    which share the worker image, must not inherit an offline Hub."""
    from sdxlpool.api.spec import pool_from_yaml
    from sdxlpool.operator.desired import desired_state
    from sdxlpool.operator.desired.pods import TMP_DIR

    image_env = env_of(parse_stages(WORKER)[-1])
    assert image_env["SDXLPOOL_CACHE"].startswith(TMP_DIR + "/") and image_env["HOME"] == TMP_DIR

    pool = pool_from_yaml((ROOT / "examples" / "pool.yaml").read_text(encoding="utf-8"))
    workers = [c for c in desired_state(pool).children if c["kind"] == "Deployment"
               and c["spec"]["template"]["spec"].get("initContainers")]
    assert workers, "examples/pool.yaml should use a huggingFace model source"
    pod = workers[0]["spec"]["template"]["spec"]

    def effective(container: dict) -> dict[str, str]:
        return {**image_env, **{e["name"]: e.get("value", "") for e in container.get("env", [])}}

    for init in pod["initContainers"]:
        assert init["command"][0] == "hf"
        assert effective(init).get("HF_HUB_OFFLINE", "0") in ("", "0"), "downloads would run with the Hub offline"
    [worker] = pod["containers"]
    assert effective(worker).get("HF_HUB_OFFLINE") == "1"


def test_entrypoints_name_real_subcommands(dockerfile: Path) -> None:
    from sdxlpool.cli import _build_parser

    parser = _build_parser()
    [commands] = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    final = parse_stages(dockerfile)[-1]
    [entrypoint] = final.all("ENTRYPOINT")
    words = entrypoint.exec_form()
    assert words, "ENTRYPOINT in exec form, so the process gets SIGTERM directly"
    assert words[0] == "sdxlpool"
    cmd = [i.exec_form() for i in final.all("CMD")]
    full = words[1:] + ((cmd[-1] or []) if cmd else [])
    assert full, "the image should do something when run without arguments"
    assert full[0] in commands.choices or full[0] == "--help", f"sdxlpool {full[0]}: no such sub-command"
    if dockerfile == WORKER:
        assert words[1:] == ["worker"]
    # What the operator and a chart run: `command: [sdxlpool]` with these sub-commands as args.
    for needed in ("worker", "gateway", "operator"):
        assert needed in commands.choices


def test_exposed_ports_are_the_cli_defaults() -> None:
    from sdxlpool.api.ports import GATEWAY_PORT, WORKER_PORT
    from sdxlpool.gateway.settings import GatewaySettings
    from sdxlpool.worker.settings import WorkerSettings

    def exposed(path: Path) -> set[int]:
        return {int(p.split("/")[0]) for i in parse_stages(path)[-1].all("EXPOSE") for p in i.args.split()}

    assert exposed(WORKER) == {WorkerSettings.model_fields["port"].default} == {WORKER_PORT}
    assert exposed(SERVICE) == {GatewaySettings.model_fields["port"].default} == {GATEWAY_PORT}


def _service_requirements() -> list[Requirement]:
    lines = SERVICE_REQUIREMENTS.read_text(encoding="utf-8").splitlines()
    return [Requirement(line.split("#")[0].strip()) for line in lines if line.split("#")[0].strip()]


def _pyproject_dependencies() -> dict[str, Requirement]:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = (Requirement(d) for d in project["dependencies"])
    return {canonicalize_name(r.name): r for r in requirements}


def test_service_requirements_are_pyprojects_without_the_worker_stack() -> None:
    declared = _pyproject_dependencies()
    service = _service_requirements()
    names = [canonicalize_name(r.name) for r in service]
    assert len(names) == len(set(names)), "a requirement is listed twice"
    assert not set(names) & WORKER_ONLY, "the service image must not install the worker's ML stack"
    for requirement in service:
        name = canonicalize_name(requirement.name)
        assert name in declared, f"{requirement.name}: not a dependency in pyproject.toml"
        assert requirement.specifier == declared[name].specifier, f"{requirement.name}: floor differs from pyproject"
        assert requirement.extras == declared[name].extras, f"{requirement.name}: extras differ from pyproject"
    service_file = SERVICE.read_text(encoding="utf-8")
    assert "--no-deps" in service_file and "docker/service-requirements.txt" in service_file


def test_gateway_and_operator_import_with_only_the_service_requirements() -> None:
    """Every pyproject dependency left out of the service image is blocked; its modules still import."""
    from importlib.metadata import packages_distributions

    service = {canonicalize_name(r.name) for r in _service_requirements()}
    left_out = set(_pyproject_dependencies()) - service
    blocked = sorted(
        module for module, dists in packages_distributions().items()
        if {canonicalize_name(d) for d in dists} & left_out and not module.startswith("_")
    )
    assert {"torch", "diffusers", "transformers"} <= set(blocked)
    script = f"""
import importlib, importlib.abc, pkgutil, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"blocked in the service image: {{name}}", name=name)
sys.meta_path.insert(0, Block())
import sdxlpool, sdxlpool.cli
sdxlpool.cli._build_parser()
names = ["sdxlpool._kube", "sdxlpool._serving", "sdxlpool._http"]
for package in ("sdxlpool.gateway", "sdxlpool.operator", "sdxlpool.api"):
    module = importlib.import_module(package)
    names += [m.name for m in pkgutil.walk_packages(module.__path__, package + ".")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
