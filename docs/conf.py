"""Sphinx configuration of barenet's documentation.

Build the site with ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (the command CI runs):
``-W`` turns every warning into an error, so a broken cross-reference, a page left out of every table of
contents, a public name without a docstring in the API reference or a tutorial that raises fails the build.

The tutorials in ``docs/tutorials/`` are Python scripts that sphinx-gallery runs while the site builds; their
printed output and figures are put into the pages, so what a page shows is what the code does today.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # document the working tree's barenet, installed or not
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
os.environ.setdefault("MPLBACKEND", "Agg")
# The tutorials train small networks in short runs. Compiling numba's kernels would cost more than they save
# there, and on small matrices BLAS's extra threads only spin (on a busy machine, minutes where one thread takes
# seconds), so unless told otherwise the site is built with NumPy's kernels on one thread. Set before NumPy and
# barenet are imported, and inherited by the commands the pages run.
for variable in ("BARENET_NUMBA", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "0" if variable == "BARENET_NUMBA" else "1")

import barenet  # noqa: E402

project = "barenet"
author = "the barenet authors"
copyright = "barenet authors, MIT license"
release = version = barenet.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "barenet_command",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "tutorials/README.rst", "tutorials/GALLERY_HEADER.rst", "**/*.ipynb", "**/*.py.md5",
                    "**/*.codeobj.json"]
templates_path = ["_templates"]

# Every cross-reference must resolve: a reference to a barenet name that does not exist is an error. Names of
# other projects (NumPy, scikit-learn, the standard library's typing) have no pages here to link to.
nitpicky = True
nitpick_ignore_regex = [
    # prose in a NumPy-style type ("int >= 1", "(n_classes,) array", '{"float32", "float64"}'), not a class name
    ("py:class", r".*[^\w.].*"),
    ("py:class", r"(?!barenet\.)[a-z_][\w]*"),
    ("py:class", r"barenet\.threads\.T"),  # the TypeVar of threads.run
    ("py:.*", r"(np|numpy|npt|sklearn|onnx|pandas|pd|dask|torch|keras|os|pathlib|collections|typing|types|"
              r"contextlib|concurrent|threading|zipfile|io|enum|abc)\..*"),
    ("py:.*", r"(ndarray|NDArray|ArrayLike|DTypeLike|Path|PathLike|Callable|Iterator|Iterable|Sequence|Mapping|"
              r"Generator|Any|Literal|Self|TypeVar|T|None|Ellipsis|optional|callable|array-like|array_like|"
              r"ModelProto|GraphProto|TensorProto|NodeProto|DataFrame|Series|Future|AbstractContextManager|"
              r"BaseEstimator|ClassifierMixin|RegressorMixin|MultiOutputMixin|TransformerMixin|dtype|"
              r"int|float|str|bool|dict|list|tuple|bytes|object|type|slice|complex|Exception|ValueError|"
              r"TypeError|OSError|UserWarning|KeyError|RuntimeError|set|frozenset|ClassVar)"),
]

# API reference: autosummary writes one page per public name from its docstring (NumPy style, read by napoleon).
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"member-order": "groupwise"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autoclass_content = "class"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = False  # parameter types are prose here ("int >= 1", "(batch, features) array"), not class names
napoleon_use_keyword = False
napoleon_custom_sections = [("Shapes", "notes_style"), ("Formula", "notes_style"), ("Math", "notes_style")]

myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

sphinx_gallery_conf = {
    "examples_dirs": ["tutorials"],
    "gallery_dirs": ["auto_tutorials"],
    "filename_pattern": r"/plot_",          # every tutorial is executed
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "abort_on_example_error": False,      # run them all, then fail the build listing every one that raised
    "only_warn_on_example_error": False,
    "show_memory": False,
    "min_reported_time": 1,
}

html_theme = "furo"
html_title = f"barenet {release}"

html_show_sourcelink = False
html_theme_options = {"navigation_with_keys": True}


def _documented_modules(env) -> set[str]:
    return {name for name, entry in env.get_domain("py").objects.items() if entry.objtype == "module"}


def _is_internal(target: str, modules: set[str]) -> bool:
    """A name inside barenet that the reference does not cover: a private name, or a name in (or of) one of the
    implementation modules that the public modules are built from (``barenet.kernels.attention``,
    ``barenet.layers.conv.ImageLayer``, ``barenet.layers.base``)."""
    parts = target.split(".")
    if parts[-1].startswith("_") and parts[-1] != "__init__":
        return True
    if parts[0] != "barenet":
        return False
    module = max((m for m in modules if target == m or target.startswith(m + ".")), key=len, default="barenet")
    if target == module:
        return False
    submodule = f"{module}.{target[len(module) + 1:].split('.')[0]}"
    if submodule in modules:
        return False
    try:
        importlib.import_module(submodule)
    except ImportError:
        return False  # not a module: a name of a documented module that does not exist, which is an error
    return True


def _candidates(domain, node, target: str) -> list[str]:
    """Documented objects whose dotted name ends with ``target``; for a method or attribute named in a class's
    docstring, the one the class has (its own or a documented base class's) first."""
    # canonical names (``barenet.models.graph.Arrays`` for ``barenet.models.Arrays``) are aliases, not objects
    found = sorted({name for name, entry in domain.objects.items()
                    if name.endswith("." + target) and not entry.aliased})
    module, cls = node.get("py:module"), node.get("py:class")
    if cls and len(found) > 1:
        try:
            obj = importlib.import_module(module)
            for part in cls.split("."):
                obj = getattr(obj, part)
            bases = [base.__name__ for base in inspect.getmro(obj)]
        except (ImportError, AttributeError, TypeError):
            bases = [cls.split(".")[-1]]
        for base in bases:
            own = [name for name in found if name.endswith(f".{base}.{target}")]
            if own:
                return own[:1]
    return found


def resolve_short_names(app, env, node, contnode):
    """Resolve what Sphinx left unresolved in a docstring, or let it fail the build.

    ``:class:`ShapeError``` written in a module other than :mod:`barenet.errors` resolves to the one documented
    object whose name ends with it (a method of the docstring's class or of its base classes first); a
    reference to a private name or into a module the reference leaves out is shown as code, not as a link.
    Anything else stays unresolved, which ``-W`` makes an error.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    domain = env.get_domain("py")
    if _is_internal(target, _documented_modules(env)):
        return contnode
    found = _candidates(domain, node, target)
    if len(found) != 1:
        return None
    return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], found[0], node, contnode)


def setup(app):
    app.connect("missing-reference", resolve_short_names)
