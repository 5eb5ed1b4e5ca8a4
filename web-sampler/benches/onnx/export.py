"""Exports a model file's MLP velocity network to ONNX, for the `peers` benchmark.

    python export.py MODEL.safetensors NETWORK.onnx [--table TABLE.json --solve SOLVE.onnx]

NETWORK.onnx computes what `Model::velocity` does: inputs `x` [B, D] float32, `t` [B] float32,
`class` [B] int64; output `u` [B, D] (the velocity; a data-predicting model's x̂1 is turned into
the velocity as the runtime does). The time embedding is computed in float64, as the runtime's.
With --table (a JSON object with the NS table's `times`, `a` and `b`, as `NsTable` has them),
SOLVE.onnx runs the whole solve (guidance 0) in one graph: inputs `x0`, `class`; output `x`
(unclamped). Needs the `onnx` and `numpy` packages.
"""

import argparse
import json
import struct

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MIN_REMAINING = 0.05  # path::DATA_PREDICTION_MIN_REMAINING
MAX_PERIOD = 10000.0  # embedding::MAX_PERIOD


def read_model(path):
    """The spec (the `bns.model` metadata) and the tensors of a model file."""
    data = open(path, "rb").read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    spec = json.loads(header.pop("__metadata__")["bns.model"])
    body = data[8 + length :]
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: tensor {name} is {info['dtype']}, expected F32")
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(body[start:end], dtype="<f4").reshape(info["shape"])
    if spec.get("architecture") != "mlp":
        raise SystemExit(f"{path}: architecture {spec.get('architecture')!r} is not exported")
    return spec, tensors


class Builder:
    """Nodes and initializers of one graph, with fresh names."""

    def __init__(self, spec, tensors):
        self.spec, self.nodes, self.initializers, self.count = spec, [], [], 0
        self.weights = {}
        for i in range(spec["depth"] + 1):
            w = tensors[f"layers.{i}.weight"]
            self.weights[i] = (
                self.constant(np.ascontiguousarray(w.T), f"layers.{i}.weight_t"),
                self.constant(tensors[f"layers.{i}.bias"], f"layers.{i}.bias"),
            )
        self.class_table = None
        if spec.get("class_embedding", 0) > 0:
            self.class_table = self.constant(tensors["class_embedding.weight"], "class_embedding")
        half = spec["time_embedding"] // 2
        k = np.arange(half, dtype=np.float64)
        frequencies = np.exp(-np.log(MAX_PERIOD) * k / half).reshape(1, half)
        self.frequencies = self.constant(frequencies, "time_frequencies")
        self.scale = self.constant(np.array(spec.get("time_scale", 1000.0), np.float64), "time_scale")
        self.one = self.constant(np.array(1.0, np.float32), "one")
        self.floor = self.constant(np.array(MIN_REMAINING, np.float32), "min_remaining")
        self.axis1 = self.constant(np.array([1], np.int64), "axis1")

    def constant(self, array, name):
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, kind, inputs, **attributes):
        self.count += 1
        name = f"{kind.lower()}_{self.count}"
        self.nodes.append(helper.make_node(kind, inputs, [name], **attributes))
        return name

    def velocity(self, x, t, label):
        """The network's velocity at x [B, D], t [B] (float32), class [B] (int64)."""
        op = self.op
        scaled = op("Mul", [op("Cast", [op("Unsqueeze", [t, self.axis1])], to=TensorProto.DOUBLE), self.scale])
        angle = op("Mul", [scaled, self.frequencies])
        embedding = op("Cast", [op("Concat", [op("Sin", [angle]), op("Cos", [angle])], axis=1)], to=TensorProto.FLOAT)
        parts = [x, embedding]
        if self.class_table is not None:
            parts.append(op("Gather", [self.class_table, label], axis=0))
        h = op("Concat", parts, axis=1)
        last = self.spec["depth"]
        for i in range(last + 1):
            weight, bias = self.weights[i]
            h = op("Add", [op("MatMul", [h, weight]), bias])
            if i < last:
                h = op("Mul", [h, op("Sigmoid", [h])])
        if self.spec.get("prediction") == "data":
            remaining = op("Max", [op("Sub", [self.one, t]), self.floor])
            factor = op("Unsqueeze", [op("Reciprocal", [remaining]), self.axis1])
            h = op("Mul", [op("Sub", [h, x]), factor])
        return h

    def save(self, inputs, output, path):
        graph = helper.make_graph(self.nodes, "velocity", inputs, [output], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, path)


def data_dim(spec):
    return int(np.prod(spec["data_shape"]))


def network_graph(spec, tensors, path):
    b = Builder(spec, tensors)
    d = data_dim(spec)
    u = b.velocity("x", "t", "class")
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", d]),
        helper.make_tensor_value_info("t", TensorProto.FLOAT, ["B"]),
        helper.make_tensor_value_info("class", TensorProto.INT64, ["B"]),
    ]
    b.save(inputs, helper.make_tensor_value_info(u, TensorProto.FLOAT, ["B", d]), path)


def solve_graph(spec, tensors, table_path, path):
    """x_{i+1} = Σ_j a[i][j]·x_j + Σ_j b[i][j]·u_j with u_j = u(x_j, t_j), in one graph."""
    table = json.load(open(table_path))
    b = Builder(spec, tensors)
    d = data_dim(spec)
    batch = b.op("Shape", ["class"])
    xs, us = ["x0"], []
    for i, t in enumerate(table["times"][: len(table["a"])]):
        t_row = b.op("Expand", [b.constant(np.array([t], np.float32), f"t_{i}"), batch])
        us.append(b.velocity(xs[-1], t_row, "class"))
        terms = []
        for coefficients, vectors, kind in ((table["a"][i], xs, "a"), (table["b"][i], us, "b")):
            for j, c in enumerate(coefficients):
                if c != 0.0:
                    scale = b.constant(np.array(c, np.float32), f"{kind}_{i}_{j}")
                    terms.append(b.op("Mul", [vectors[j], scale]))
        x = terms[0]
        for term in terms[1:]:
            x = b.op("Add", [x, term])
        xs.append(x)
    inputs = [
        helper.make_tensor_value_info("x0", TensorProto.FLOAT, ["B", d]),
        helper.make_tensor_value_info("class", TensorProto.INT64, ["B"]),
    ]
    b.save(inputs, helper.make_tensor_value_info(xs[-1], TensorProto.FLOAT, ["B", d]), path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("network")
    parser.add_argument("--table")
    parser.add_argument("--solve")
    args = parser.parse_args()
    spec, tensors = read_model(args.model)
    network_graph(spec, tensors, args.network)
    if args.table and args.solve:
        solve_graph(spec, tensors, args.table, args.solve)


if __name__ == "__main__":
    main()
