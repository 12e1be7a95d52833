"""A normal (non-editable) install carries everything the package reads at run time.

`pip install .` builds a wheel; only what `[tool.setuptools.package-data]` lists goes in it. The
presets were once outside the package, so `load_config(preset="quick_test")` worked in the
editable checkout and failed for everyone who installed the package. This test builds the wheel
from a copy of the sources, installs it into a fresh virtual environment (its dependencies are
borrowed from this one by a path entry, so nothing is downloaded) and resolves presets there, from
a folder that is not the checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_resolves_presets(tmp_path):
    sources = tmp_path / "src"
    sources.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, sources / name)
    shutil.copytree(
        ROOT / "sam2_finetune",
        sources / "sam2_finetune",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    dist = tmp_path / "dist"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index"),
            *("--no-build-isolation", "--wheel-dir", str(dist), str(sources)),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("sam2_finetune-*.whl")

    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=False)
    python = fresh / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"),
            *("--no-deps", "--no-index", str(wheel)),
        ],
        check=True,
        capture_output=True,
    )
    # Dependencies (pydantic, yaml, ...) from this environment: a plain path entry, which does
    # not run this environment's own .pth files, so the editable checkout stays invisible.
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    script = textwrap.dedent(
        """
        import sam2_finetune
        from sam2_finetune.train.config import list_presets, load_config

        print(sam2_finetune.__file__)
        names = list_presets()
        assert "quick_test" in names and "qwen2_5_vl/7b_qlora" in names, names
        for name in names:
            load_config(preset=name)
        print(len(names))
        """
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    run = subprocess.run(
        [str(python), "-c", script], cwd=work, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    location, count = run.stdout.split()
    assert Path(location).is_relative_to(site), "imported the checkout, not the installed wheel"
    presets = (ROOT / "sam2_finetune" / "presets").rglob("*.yaml")
    assert int(count) == len(
        [p for p in presets if p.parent.name not in ("accelerate", "pipelines")]
    )
