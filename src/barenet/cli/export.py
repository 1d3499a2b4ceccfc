"""``barenet export MODEL.barenet MODEL.onnx``: write a saved model as an ONNX graph.

A model written by ``barenet train`` is exported with its preprocessing inside the graph (inputs: the
table's feature columns; outputs: the label and class probabilities, or the prediction), see
:mod:`barenet.onnx.table`; ``--network-only``, or any other model file, gives the bare network (input: the
encoded feature matrix), see :mod:`barenet.onnx.export`.
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Declare the ``export`` subcommand on the ``barenet`` parser's subcommands."""
    export = sub.add_parser("export", help="write a model as an ONNX graph, to serve with onnxruntime")
    export.add_argument("model", help="model file written by barenet (barenet train or barenet.save)")
    export.add_argument("out", help="ONNX file to write")
    export.add_argument("--opset", type=int, default=None, help="ONNX opset, 13 or newer (default: 21)")
    export.add_argument("--network-only", action="store_true",
                        help="export only the network, whose input is the encoded feature matrix, even for a "
                             "model trained on a table")
    export.add_argument("--force", action="store_true", help="overwrite the ONNX file")


def run(args: argparse.Namespace) -> int:
    from ..onnx.export import check_opset, to_onnx
    from ..onnx.table import table_to_onnx
    from .inference import load_model
    from .paths import check_output_file, write_file

    check_opset(args.opset)  # before reading the model: a missing onnx package or a bad opset is said first
    model = load_model(args.model)
    out = check_output_file(args.out, args.force, "ONNX file")
    with_table = not args.network_only and "preprocessing" in (model.metadata or {})
    proto = table_to_onnx(model, opset=args.opset) if with_table else to_onnx(model, opset=args.opset)
    data = proto.SerializeToString()
    write_file(out, lambda path: path.write_bytes(data), "ONNX file")
    names = ", ".join(i.name for i in proto.graph.input)
    outputs = ", ".join(o.name for o in proto.graph.output)
    print(f"wrote {out} (opset {proto.opset_import[0].version}; inputs: {names}; outputs: {outputs})")
    return 0
