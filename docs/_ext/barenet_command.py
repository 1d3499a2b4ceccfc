"""The ``barenet-command`` directive: run a ``barenet`` command while the site builds and show what it printed.

``.. barenet-command:: demo`` runs ``python -m barenet demo`` with the barenet being documented and puts
``$ barenet demo`` and its output in a literal block. A command that exits non-zero fails the build, so a page
never shows output that the code no longer prints.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective

SRC = Path(__file__).resolve().parents[2] / "src"


class BarenetCommand(SphinxDirective):
    """Run ``python -m barenet ARGS`` and include ``$ barenet ARGS`` with its standard output and error."""

    required_arguments = 1
    final_argument_whitespace = True
    has_content = False
    option_spec = {"timeout": int}

    def run(self) -> list[nodes.Node]:
        args = shlex.split(self.arguments[0])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
               "MPLBACKEND": "Agg"}
        proc = subprocess.run([sys.executable, "-m", "barenet", *args], capture_output=True, text=True, env=env,
                              timeout=self.options.get("timeout", 300), cwd=self.env.app.outdir)
        if proc.returncode != 0:
            raise ExtensionError(f"`barenet {self.arguments[0]}` in {self.env.docname} exited with "
                                 f"{proc.returncode}:\n{proc.stderr}")
        text = f"$ barenet {self.arguments[0]}\n{proc.stdout}{proc.stderr}".rstrip()
        block = nodes.literal_block(text, text)
        block["language"] = "console"
        return [block]


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("barenet-command", BarenetCommand)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
