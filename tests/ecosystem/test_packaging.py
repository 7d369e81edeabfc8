"""The package as a user gets it: built, installed into a fresh venv, run from there.

One sdist and one wheel are built per session with ``python -m build`` (the
wheel from the sdist, so the sdist is proven to build the package), from a
copy of the files git tracks in the checkout. A new virtual environment then
installs that wheel, and everything the docs tell a user to run is run from
it, outside the source tree, so a file, entry point or dependency missing
from the package shows up as it would for a user. The docs' own ``pip
install`` blocks (quickstart.md, cinder.md) are run literally too, Cinder
extra included. Slow: a few minutes, most of it installing Cinder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from iscsi_helper import options

from .test_docs_commands import packaging_blocks, shell_blocks

REPO = Path(__file__).resolve().parents[2]
SUBCOMMANDS = [
    "export",
    "unexport",
    "ensure",
    "list",
    "show",
    "connection-info",
    "disconnect",
    "reconcile",
    "helpers",
]
FILTERS = Path("etc/iscsi-helper/rootwrap.d/iscsi-helper.filters")
#: Files of a commit that the sdist leaves out on purpose.
NOT_IN_SDIST = {".gitignore"}


def run(argv: list[str] | str, env: dict[str, str], cwd: Path, timeout: int = 900) -> str:
    done = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        shell=isinstance(argv, str),
        executable="/bin/bash" if isinstance(argv, str) else None,
    )
    assert done.returncode == 0, f"{argv}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def venv_env(env_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a user who activated ``env_dir``: nothing of this checkout on sys.path."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")
    }
    env.update(PATH=f"{env_dir / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", VIRTUAL_ENV=str(env_dir), **extra)
    return env


def committed_files() -> list[str] | None:
    """The files git tracks in the checkout (as they are on disk), or None outside a git checkout."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        return None
    done = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return None
    return sorted(f for f in done.stdout.split("\0") if f and (REPO / f).is_file())


def copy_checkout(dest: Path) -> Path:
    files = committed_files()
    if files is None:
        shutil.copytree(
            REPO,
            dest,
            ignore=shutil.ignore_patterns(
                ".git",
                "*.egg-info",
                "__pycache__",
                "build",
                "dist",
                ".venv*",
                ".pytest_cache",
                ".hypothesis",
                ".ruff_cache",
                ".mypy_cache",
            ),
        )
        return dest
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    return dest


@dataclass
class Built:
    sdist: Path
    wheel: Path


@dataclass
class Installed:
    env_dir: Path
    env: dict[str, str]
    home: Path  # a working directory outside the source tree

    @property
    def python(self) -> str:
        return str(self.env_dir / "bin" / "python")

    def run(self, *argv: str, timeout: int = 300) -> str:
        return run(list(argv), self.env, self.home, timeout)


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    """One sdist and one wheel (built from that sdist) for the whole session."""
    root = tmp_path_factory.mktemp("build")
    source = copy_checkout(root / "source")
    tools = root / "tools"
    venv.create(tools, with_pip=True)
    env = venv_env(tools)
    run([str(tools / "bin/python"), "-m", "pip", "install", "-q", "build>=1"], env, root)
    run([str(tools / "bin/python"), "-m", "build", "--outdir", str(root / "dist"), str(source)], env, root)
    sdists = list((root / "dist").glob("*.tar.gz"))
    wheels = list((root / "dist").glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, list((root / "dist").iterdir())
    return Built(sdists[0], wheels[0])


@pytest.fixture(scope="session")
def installed(built, tmp_path_factory) -> Installed:
    """A fresh venv with the wheel installed from the index's dependencies, run from elsewhere."""
    root = tmp_path_factory.mktemp("installed")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    home = root / "home"
    home.mkdir()
    tmp = root / "tmp"
    tmp.mkdir()
    env = venv_env(env_dir, HOME=str(home), TMPDIR=str(tmp))
    run([str(env_dir / "bin/python"), "-m", "pip", "install", "-q", str(built.wheel)], env, home)
    return Installed(env_dir, env, home)


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text().splitlines()
    demo, tests = readme[2].strip(), readme[3].strip()
    assert demo == "bash scripts/setup.sh && .venv/bin/python3 -m iscsi_helper demo"
    assert tests == "bash scripts/setup.sh && .venv/bin/python3 -m pytest -q"
    ci = [line for line in (REPO / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == tests, "the last command of .ci/run is the README's test command"


@pytest.mark.slow
def test_wheel_carries_license_filters_types_and_metadata(built):
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        data = dist_info.replace(".dist-info", ".data")
        metadata = wheel.read(f"{dist_info}/METADATA").decode()
        entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()
        assert wheel.read(f"{dist_info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
        assert wheel.read(f"{data}/data/{FILTERS}") == (REPO / FILTERS).read_bytes()
        assert "iscsi_helper/py.typed" in names
        assert (
            wheel.read(f"{data}/data/share/man/man1/iscsi-helper.1")
            == (REPO / "docs/man/iscsi-helper.1").read_bytes()
        )
        assert (
            wheel.read(f"{data}/data/share/bash-completion/completions/iscsi-helper")
            == (REPO / "etc/bash_completion.d/iscsi-helper").read_bytes()
        )
    license_text = (REPO / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    headers = metadata.split("\n\n", 1)[0].splitlines()
    assert "License-Expression: Apache-2.0" in headers
    assert "License-File: LICENSE" in headers
    assert not any(h.startswith("License: ") for h in headers), "no legacy License field"
    assert any(h.startswith("Project-URL: ") for h in headers)
    for requirement in ("tooz", "redis"):
        assert any(
            h.startswith(f"Requires-Dist: {requirement}") and 'extra == "coordination"' in h for h in headers
        ), f"{requirement} in the coordination extra"
    assert any(h.startswith("Requires-Dist: cinder") and 'extra == "cinder"' in h for h in headers)
    assert "[oslo.config.opts]\niscsi_helper = iscsi_helper.options:list_opts" in entry_points


@pytest.mark.slow
def test_sdist_holds_the_checkout_and_its_tests_collect(built, tmp_path):
    with tarfile.open(built.sdist) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n and sdist.getmember(n).isfile()}
        if hasattr(tarfile, "data_filter"):
            sdist.extractall(tmp_path, filter="data")
        else:  # a Python without PEP 706's filters; our own archive
            sdist.extractall(tmp_path)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    committed = committed_files()
    if committed is not None:
        missing = set(committed) - NOT_IN_SDIST - names
        assert not missing, f"{len(missing)} tracked files missing from the sdist: {sorted(missing)[:20]}"
    for needed in (
        "LICENSE",
        "pyproject.toml",
        "tests/conftest.py",
        "tests/behaviour/harness.py",
        "scripts/setup.sh",
        "tools/gen_config_doc.py",
        str(FILTERS),
    ):
        assert needed in names, needed
    # Every test module and conftest in the sdist imports there: no module missing its helpers.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path / top,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"^\d+ tests collected", done.stdout, re.M), done.stdout[-2000:]


@pytest.mark.slow
def test_installed_command_runs_the_quickstart(installed):
    assert installed.run(
        installed.python, "-c", "import iscsi_helper; print(iscsi_helper.__file__)"
    ).startswith(str(installed.env_dir)), "a real install, not the checkout"
    command = str(installed.env_dir / "bin" / "iscsi-helper")
    top = installed.run(command, "--help")
    for name in SUBCOMMANDS:
        assert f"    {name} " in top, f"{name} is listed in --help"
        sub = installed.run(command, name, "--help")
        assert sub.startswith(f"usage: iscsi-helper {name}")
        assert len(sub.splitlines()) > 4, f"{name} --help explains itself"
    assert {"chiscsi", "iet", "tgt", "fake"} <= set(installed.run(command, "helpers").split())

    quickstart = [b for b in shell_blocks("quickstart.md") if "pip install" not in b]
    assert len(quickstart) == 1, quickstart
    out = run(quickstart[0], installed.env, installed.home, timeout=120)
    assert "provider_location" in out and "127.0.0.1:3260,1 " in out
    assert out.rstrip().endswith("export removed")
    tmp = Path(installed.env["TMPDIR"])
    assert list(tmp.glob("*/iscsi-helper.conf")), "the walkthrough used its own mktemp -d"


@pytest.mark.slow
def test_rootwrap_filters_are_installed_where_the_docs_say(installed, tmp_path):
    data = installed.run(installed.python, "-c", "import sysconfig; print(sysconfig.get_path('data'))")
    assert (Path(data.strip()) / FILTERS).read_bytes() == (REPO / FILTERS).read_bytes()
    assert (installed.env_dir / FILTERS).is_file(), "in a venv, under the venv's own directory"
    # The documented command, literally, with /etc/cinder/rootwrap.d/ made a directory of ours.
    commands = [
        line.strip()
        for line in (REPO / "docs/cinder.md").read_text().splitlines()
        if line.startswith("    cp ") and FILTERS.name in line
    ]
    assert len(commands) == 1, commands
    target = tmp_path / "rootwrap.d"
    target.mkdir()
    run(commands[0].replace("/etc/cinder/rootwrap.d/", f"{target}/"), installed.env, installed.home)
    assert (target / FILTERS.name).read_bytes() == (REPO / FILTERS).read_bytes()


@pytest.mark.slow
def test_lab_tools_the_docs_name_run_from_the_install(installed, tmp_path):
    python = installed.python
    installed.run(str(installed.env_dir / "bin/iscsi-helper"), "demo", "--help")
    installed.run(python, "-m", "iscsi_helper.lab.wire", "--help")
    installed.run(python, "-m", "iscsi_helper.lab.emulators.chiscsi", "-h")
    installed.run(python, "-m", "iscsi_helper.lab.emulators.iet", "--help")
    # docs/emulators/iet.md: `iscsi-helper lab shims DIR`, prepend DIR to PATH, and `ietadm`
    # and `iscsictl` are the emulators, run by the installed package.
    bin_dir = tmp_path / "shims"
    installed.run(str(installed.env_dir / "bin/iscsi-helper"), "lab", "shims", str(bin_dir))
    env = {**installed.env, "PATH": f"{bin_dir}:{installed.env['PATH']}"}
    assert "emulated" in run(["ietadm", "--help"], env, installed.home)
    assert "Usage: iscsictl" in run(["iscsictl", "-h"], env, installed.home)


@pytest.mark.slow
def test_oslo_config_generator_writes_a_sample_with_every_option(installed, tmp_path):
    sample = tmp_path / "iscsi-helper.conf.sample"
    installed.run(
        str(installed.env_dir / "bin/oslo-config-generator"),
        "--namespace",
        "iscsi_helper",
        "--output-file",
        str(sample),
    )
    text = sample.read_text()
    sections = dict(re.findall(r"^\[(\w+)\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S))
    for group, opts in options.list_opts():
        assert group in sections, f"[{group}] is in the sample"
        for opt in opts:
            assert re.search(rf"^#{re.escape(opt.dest)} =", sections[group], re.M), (
                f"[{group}] {opt.dest} is in the sample"
            )
    assert "#target_helper = tgtadm" in text


@pytest.mark.slow
def test_cinder_adapter_without_cinder_names_the_extra(installed):
    done = subprocess.run(
        [installed.python, "-c", "import iscsi_helper.cinder.driver"],
        env=installed.env,
        cwd=installed.home,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: iscsi_helper.cinder is the Cinder adapter")
    assert "pip install 'iscsi-helper[cinder]'" in last


@pytest.mark.slow
def test_docs_pip_install_blocks_give_the_command_and_the_cinder_extra(tmp_path):
    """The docs' ``pip install`` blocks, literally, in a new venv from a copy of the checkout."""
    blocks = packaging_blocks()
    assert len(blocks) == 2, blocks  # quickstart.md and cinder.md
    source = copy_checkout(tmp_path / "src")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    env = venv_env(env_dir)

    quickstart, cinder = blocks
    out = run(quickstart, env, source)
    assert "usage: iscsi-helper" in out and "chiscsi" in out
    installed = run(
        [
            str(env_dir / "bin/python"),
            "-c",
            "import iscsi_helper, sys; sys.stdout.write(iscsi_helper.__file__)",
        ],
        env,
        tmp_path,
    )
    assert installed.startswith(str(env_dir)), "a real install, not a path into the checkout"

    run(cinder, env, source)
    version = run(
        [str(env_dir / "bin/python"), "-c", "import importlib.metadata as m; print(m.version('cinder'))"],
        env,
        tmp_path,
    )
    assert version.strip().startswith("29.")


@pytest.mark.slow
def test_coordination_url_without_tooz_names_the_extra(installed, tmp_path):
    """A plain install has no tooz: one line saying which extra to install, exit 2, nothing done."""
    conf = tmp_path / "iscsi-helper.conf"
    conf.write_text(
        f"[DEFAULT]\ntarget_helper = fake\nstate_path = {tmp_path / 'state'}\n"
        "target_ip_address = 127.0.0.1\ncoordination_url = redis://127.0.0.1:6379\n"
    )
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * 4096)
    done = subprocess.run(
        [str(installed.env_dir / "bin/iscsi-helper"), "--config-file", str(conf), "export", "1", str(disk)],
        env=installed.env,
        cwd=installed.home,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr == (
        "iscsi-helper: error: coordination_url needs the Python package tooz, "
        "which is not installed: pip install 'iscsi-helper[coordination]'\n"
    )
    assert not (tmp_path / "state" / "volumes" / "fake" / "volume-1").exists()
