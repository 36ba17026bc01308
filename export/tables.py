"""A graph's token tables as ONNX external data, in a file beside it.

A token table is an initializer that a Gather reads by input_ids (directly or through Casts, or
as an EmbedLayerNormalization's word embedding): the word-embedding matrix, and for int8 its
row scales. `graph_entry` moves a variant's tables to `<file>_data` (model.onnx ->
model.onnx_data), each on its own page, and returns the manifest's record of the variant with
the data file and where each table lies (Variant.data, Variant.tables); the graph's metadata
records the same and the data file's sha256, so the graph's own sha256 stands for its tables
and the runtime can check the manifest against it.

Why: ONNX Runtime copies each initializer out of the parsed file before it frees that file's
bytes, so loading a graph that holds its table peaks at all the weights plus a copy of the
table (94 MB for MPNet, 768 MB for XLM-R's 250k rows). The runtime reads the data file itself,
verified, and hands the tables to ONNX Runtime to use in place (runtime/session.py): no copy.
ONNX Runtime and text-embeddings-inference still load the graph by path, reading the data file
by its name (docs/decisions.md "Token tables in a data file, read by the runtime and used in
place").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.external_data_helper import set_external_data

from embedrt.manifest import (
    TABLE_DTYPES,
    TABLES_METADATA_KEY,
    FileEntry,
    Table,
    sha256_file,
    tables_record,
)

ALIGN = 4096  # each table starts on a page of the data file
IDS = "input_ids"


def graph_entry(folder: Path, file: str) -> dict[str, Any]:
    """Move the token tables of folder/file to its data file and return the manifest's record
    of the graph: file, sha256, data and tables (Variant's fields). A graph without token
    tables is left as it is (data None)."""
    path = folder / file
    model = onnx.load(str(path))  # with any external data it already had
    tensors = token_tables(model.graph)
    if not tensors:
        return {"file": file, "sha256": sha256_file(path), "data": None, "tables": ()}
    data = path.with_name(path.name + "_data")
    tables = []
    with open(data, "wb") as f:
        for tensor in tensors:
            array = np.ascontiguousarray(numpy_helper.to_array(tensor))
            f.write(b"\0" * (-f.tell() % ALIGN))
            offset = f.tell()
            f.write(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
            tensor.raw_data = b"\0"  # set_external_data asks for raw_data, then it goes
            set_external_data(tensor, location=data.name, offset=offset, length=array.nbytes)
            for kept in ("raw_data", "float_data", "int32_data"):
                tensor.ClearField(kept)
            tensor.data_location = onnx.TensorProto.EXTERNAL
            tables.append(Table(tensor.name, array.dtype.name, tuple(array.shape), offset))
    entry = FileEntry(data.name, sha256_file(data))
    set_record(model, tables_record(entry, tuple(tables)))
    onnx.save(model, str(path))
    return {"file": file, "sha256": sha256_file(path), "data": entry, "tables": tuple(tables)}


def set_record(model: onnx.ModelProto, record: str | None) -> None:
    """Set the graph's record of its tables (TABLES_METADATA_KEY), or remove it with None,
    keeping the graph's other metadata."""
    kept = [p for p in model.metadata_props if p.key != TABLES_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    if record is not None:
        prop = model.metadata_props.add()
        prop.key, prop.value = TABLES_METADATA_KEY, record


def token_tables(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
    """The graph's token tables (see the module's doc) whose type the runtime reads
    (manifest.TABLE_DTYPES), in the order the graph first uses them."""
    ids = {IDS}
    inits = {t.name: t for t in graph.initializer}
    found: dict[str, onnx.TensorProto] = {}
    for node in graph.node:  # topologically sorted, as ONNX requires
        if node.op_type == "Cast" and node.input[0] in ids:
            ids.update(node.output)
            continue
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[1] in ids:
            table = node.input[0]
        elif node.op_type == "EmbedLayerNormalization" and node.input[0] in ids:
            table = node.input[2]
        else:
            continue
        tensor = inits.get(table)
        if tensor is not None and _dtype(tensor) in TABLE_DTYPES:
            found.setdefault(table, tensor)
    return list(found.values())


def _dtype(tensor: onnx.TensorProto) -> str:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).name
