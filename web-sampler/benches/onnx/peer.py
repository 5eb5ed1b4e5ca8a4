"""ONNX Runtime's side of the `peers` benchmark: runs the same solve as the project's CPU path
and times it, on commands from the benchmark (one a line on stdin, one answer a line on stdout).

    python peer.py NETWORK.onnx SOLVE.onnx PROBLEM.json

PROBLEM.json: `x0` [B·D], `classes` [B], `dim`, and the NS table's `times`, `a`, `b`.
Commands: `loop THREADS` (the solve with the network's graph, the loop here in numpy),
`graph THREADS` (the whole solve in one graph); each answers the milliseconds it took, then
writes its last output (float32, unclamped) to OUTPUT when given as a third word.
Needs `onnxruntime` and `numpy`.
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort


def session(path, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads sleep instead of spinning: they would take the cores from the other
    # process while it is timed.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main():
    network_path, solve_path, problem_path = sys.argv[1:4]
    problem = json.load(open(problem_path))
    dim = problem["dim"]
    x0 = np.asarray(problem["x0"], np.float32).reshape(-1, dim)
    classes = np.asarray(problem["classes"], np.int64)
    times, a, b = problem["times"], problem["a"], problem["b"]
    rows = x0.shape[0]
    sessions = {}

    def get(kind, threads):
        key = (kind, threads)
        if key not in sessions:
            sessions[key] = session(network_path if kind == "loop" else solve_path, threads)
        return sessions[key]

    def solve_loop(net):
        xs, us = [x0], []
        for i in range(len(a)):
            t = np.full(rows, times[i], np.float32)
            us.append(net.run(None, {"x": xs[-1], "t": t, "class": classes})[0])
            x = np.zeros_like(x0)
            for coefficients, vectors in ((a[i], xs), (b[i], us)):
                for c, v in zip(coefficients, vectors):
                    if c != 0.0:
                        x += np.float32(c) * v
            xs.append(x)
        return xs[-1]

    def solve_graph(net):
        return net.run(None, {"x0": x0, "class": classes})[0]

    print("ready", ort.__version__, flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        kind, threads = words[0], int(words[1])
        net = get(kind, threads)
        solve = solve_loop if kind == "loop" else solve_graph
        start = time.perf_counter()
        out = solve(net)
        elapsed = (time.perf_counter() - start) * 1e3
        if len(words) > 2:
            out.astype("<f4").tofile(words[2])
        print(f"{elapsed:.4f}", flush=True)


if __name__ == "__main__":
    main()
