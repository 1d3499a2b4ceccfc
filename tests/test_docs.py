"""The documentation site: every public name in the API reference with a docstring, the site building with
warnings as errors, and its pages rendering in a real browser.

The build is the one CI makes (``.ci/run`` builds ``docs/_build/html`` with ``-W`` and names it in
``BARENET_DOCS_HTML``); without that variable the first test that needs it builds the site once into pytest's
temporary folder, shared by the xdist workers under a file lock. The browser checks run headless Chromium
(the Debian package ``chromium``) and skip where it is not installed; their screenshots are kept in the build's
``_screenshots`` folder.
"""

from __future__ import annotations

import fcntl
import importlib
import inspect
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tempfile
import types
import zlib
from pathlib import Path

import pytest

import barenet

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = DOCS / "api"
# The modules whose __all__ is the public API: the package, its submodules in barenet.__all__, and the modules
# of the optional interfaces and of the command line's file format.
PUBLIC_MODULES = ["barenet", *sorted(name for name in barenet.__all__
                                     if isinstance(getattr(barenet, name), types.ModuleType)),
                  "sklearn", "onnx", "io", "preprocessing", "metadata"]
PUBLIC_MODULES = ["barenet"] + [f"barenet.{name}" for name in PUBLIC_MODULES[1:]]


def public_names() -> list[tuple[str, str, object]]:
    """``(module, name, value)`` for every name in every public module's ``__all__``."""
    out = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        out += [(module_name, name, getattr(module, name)) for name in module.__all__]
    return out


def reference_entries() -> tuple[set[str], set[str]]:
    """The dotted names the API pages list in autosummary tables, and the modules they document."""
    names, modules = set(), set()
    for page in sorted(API.glob("*.rst")):
        current = None
        in_summary = False
        for line in page.read_text().splitlines():
            directive = re.match(r"\.\. (currentmodule|module|automodule|py:module):: (\S+)", line)
            if directive:
                current = directive.group(2)
                if directive.group(1) != "currentmodule":
                    modules.add(current)
                in_summary = False
            elif line.startswith(".. autosummary::"):
                in_summary = True
            elif in_summary and re.match(r"   [A-Za-z_]\w*$", line):
                names.add(f"{current}.{line.strip()}")
            elif in_summary and line and not line.startswith(" "):
                in_summary = False
    return names, modules


def test_public_modules_are_those_that_name_their_api():
    for module_name in PUBLIC_MODULES:
        assert isinstance(importlib.import_module(module_name).__all__, list), module_name


def test_every_public_name_is_in_the_api_reference():
    names, modules = reference_entries()
    missing = []
    for module_name, name, value in public_names():
        if isinstance(value, types.ModuleType):
            if value.__name__ not in modules:
                missing.append(f"{module_name}.{name} (a module: its page needs `.. automodule:: {value.__name__}`)")
        elif f"{module_name}.{name}" not in names:
            missing.append(f"{module_name}.{name}")
    assert not missing, ("public names missing from the API reference (add them to an autosummary table in "
                         "docs/api/): " + ", ".join(missing))


def test_the_reference_check_sees_a_missing_name(tmp_path, monkeypatch):
    # Guards the test above: a page without one of the names is noticed.
    pages = tmp_path / "api"
    pages.mkdir()
    for page in API.glob("*.rst"):
        (pages / page.name).write_text(page.read_text().replace("   EarlyStopping\n", ""))
    monkeypatch.setattr(sys.modules[__name__], "API", pages)
    names, _ = reference_entries()
    assert "barenet.callbacks.EarlyStopping" not in names
    assert "barenet.callbacks.ModelCheckpoint" in names


def _attribute_doc(module_name: str, name: str) -> bool:
    """Whether ``name`` is documented by a ``#:`` comment (or a string after it) where a module of ``module_name``'s
    package assigns it."""
    from sphinx.pycode import ModuleAnalyzer

    module = importlib.import_module(module_name)
    candidates = [module_name]
    if hasattr(module, "__path__"):
        candidates += [f"{module_name}.{info.name}" for info in pkgutil.iter_modules(module.__path__)]
    for candidate in candidates:
        try:
            docs = ModuleAnalyzer.for_module(candidate).find_attr_docs()
        except Exception:  # a module whose source cannot be analysed documents nothing
            continue
        if any("".join(lines).strip() for (scope, attr), lines in docs.items() if scope == "" and attr == name):
            return True
    return False


def test_every_public_name_has_a_docstring():
    pytest.importorskip("sphinx")
    undocumented = []
    for module_name, name, value in public_names():
        if inspect.isclass(value) or inspect.isroutine(value) or isinstance(value, types.ModuleType):
            doc = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
            if not (doc or "").strip():
                undocumented.append(f"{module_name}.{name}")
        elif not _attribute_doc(module_name, name):
            undocumented.append(f"{module_name}.{name} (a value: document it with a `#:` comment above it)")
    assert not undocumented, "public names without a docstring: " + ", ".join(undocumented)


# ------------------------------------------------------------------------------------------- the built site
def _build(out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS),
                           str(out)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    if proc.returncode != 0:
        shutil.rmtree(out, ignore_errors=True)
        pytest.fail(f"the documentation did not build (exit {proc.returncode}):\n{proc.stderr[-6000:]}")


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The built HTML site: CI's build when ``BARENET_DOCS_HTML`` names one, else one built here, once."""
    pytest.importorskip("sphinx_gallery")
    given = os.environ.get("BARENET_DOCS_HTML")
    if given:
        assert (Path(given) / "index.html").is_file(), f"BARENET_DOCS_HTML={given} holds no built site"
        return Path(given)
    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every xdist worker of this run
    out = shared / "docs-html"
    with open(shared / "docs-html.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker builds; the others wait for it and reuse the build
        if not (out / "objects.inv").is_file():
            _build(out)
    return out


def inventory(site: Path) -> dict[str, str]:
    """``{name: role}`` of every object in the site's ``objects.inv`` (Sphinx's inventory format, version 2)."""
    raw = (site / "objects.inv").read_bytes()
    header_end = 0
    for _ in range(4):
        header_end = raw.index(b"\n", header_end) + 1
    entries = {}
    for line in zlib.decompress(raw[header_end:]).decode().splitlines():
        match = re.match(r"(.+?)\s+(\S+:\S+)\s+-?\d+\s+\S+\s+.*$", line)
        if match:
            entries[match.group(1)] = match.group(2)
    return entries


def test_built_reference_documents_every_public_name(site):
    objects = inventory(site)
    missing = [f"{module}.{name}" for module, name, value in public_names()
               if (value.__name__ if isinstance(value, types.ModuleType) else f"{module}.{name}") not in objects]
    assert not missing, "public names the built site does not document: " + ", ".join(missing)
    assert objects["barenet.Sequential.fit"] == "py:method"


def test_every_tutorial_ran_and_made_its_figures(site):
    tutorials = sorted((DOCS / "tutorials").glob("plot_*.py"))
    assert len(tutorials) >= 9
    for script in tutorials:
        page = site / "auto_tutorials" / f"{script.stem}.html"
        assert page.is_file(), f"no page for {script.name}"
        html = page.read_text()
        images = re.findall(r'<img[^>]+src="(\.\./_images/sphx_glr_[^"]+\.png)"', html)
        assert images, f"{script.name}'s page shows no figure"
        for src in images:
            assert (page.parent / src).resolve().stat().st_size > 5_000, src


# ----------------------------------------------------------------------------------------- in a real browser
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")


def _browse(page: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on ``page`` with ``args`` (``--dump-dom``, ``--screenshot=...``)."""
    browser = _chromium()
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile, outside the site and the user's home
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", "--window-size=1280,2400",
                   *args, page.as_uri()]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


def _screenshot(site: Path, page: Path, name: str):
    """A screenshot of ``page`` kept in the site's ``_screenshots`` folder, as a Pillow RGB image."""
    from PIL import Image

    folder = site / "_screenshots"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.png"
    path.unlink(missing_ok=True)
    _browse(page, f"--screenshot={path}")
    assert path.is_file() and path.stat().st_size > 10_000, f"no screenshot of {page.name}"
    return Image.open(path).convert("RGB")


def _share_of_colour(image) -> float:
    """The share of pixels that are neither white-ish nor grey: where figures and highlighted code are."""
    import numpy as np

    pixels = np.asarray(image, dtype=np.int16)
    saturation = pixels.max(axis=-1) - pixels.min(axis=-1)
    return float(np.mean(saturation > 40))


@pytest.mark.parametrize("page, words", [
    ("api/generated/barenet.Sequential.html", ["Sequential", "compute_gradients", "fit", "predict", "summary"]),
    ("api/layers.html", ["Dense", "Conv2D", "MultiHeadAttention", "LayerNormalization"]),
    ("auto_tutorials/plot_06_cnn.html", ["Convolutional networks", "confusion matrix", "test accuracy"]),
])
def test_pages_render_in_chromium(site, page, words):
    dom = _browse(site / page, "--dump-dom").stdout
    text = re.sub(r"<[^>]+>", " ", dom)
    for word in words:
        assert word in text, f"{page} as Chromium renders it lacks {word!r}"


def test_tutorial_figures_render_in_chromium(site):
    tutorial = _screenshot(site, site / "auto_tutorials" / "plot_02_sine.html", "tutorial-sine")
    reference = _screenshot(site, site / "api" / "generated" / "barenet.Sequential.html", "api-sequential")
    # The tutorial's first screen shows its code and the fitted sine's coloured curves; the reference page is
    # text on white, with a little colour in its signatures.
    assert _share_of_colour(tutorial) > 0.01, "the tutorial page shows no figure"
    assert tutorial.size == reference.size == (1280, 2400)
    assert _share_of_colour(tutorial) > _share_of_colour(reference)
