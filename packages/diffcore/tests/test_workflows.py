"""diffcore.workflows: the graph checks (each error names the node and port), the JSON round trip, the order, the
cache of unchanged nodes (in memory and on disk), failed nodes leaving no cache entry, and progress events.

The node types here are small real ones (numbers flowing between arithmetic nodes, a node writing a file), so
each check compares values a wrong executor would get wrong (how many times a node ran, what it computed).
"""

from __future__ import annotations

import json

import pytest
from diffcore import progress
from diffcore.workflows import (
    Executor,
    GraphError,
    NodeCall,
    NodeError,
    NodeRegistry,
    NodeType,
    Param,
    Port,
    Workflow,
    load_workflow,
    validate,
)

RUNS: list[str] = []  # node type names in the order they ran (reset by the fixture)


@pytest.fixture(autouse=True)
def _reset_runs():
    RUNS.clear()


def _const(call: NodeCall) -> dict:
    RUNS.append("const")
    return {"value": float(call.params["value"])}


def _add(call: NodeCall) -> dict:
    RUNS.append("add")
    return {"value": call.inputs["a"] + call.inputs.get("b", 0.0) * call.params["scale"]}


def _write(call: NodeCall) -> dict:
    RUNS.append("write")
    assert call.out_dir is not None
    (call.out_dir / "value.txt").write_text(repr(call.inputs["value"]))
    if call.params["fail"]:
        raise RuntimeError("asked to fail")
    return {"files": call.out_dir}


def _count(call: NodeCall) -> dict:
    with progress.Progress(5, "count", show=False) as bar:
        for _ in range(5):
            bar.update()
    return {"value": 5.0}


def _registry() -> NodeRegistry:
    r = NodeRegistry()
    r.add(NodeType("const", "Const", "test", _const, outputs=(Port("value", "number"),),
                   params=(Param("value", "float", 1.0),)))  # fmt: skip
    r.add(NodeType("add", "Add", "test", _add,
                   inputs=(Port("a", "number"), Port("b", "number", optional=True)),
                   outputs=(Port("value", "number"),), params=(Param("scale", "float", 1.0),)))  # fmt: skip
    r.add(NodeType("write", "Write", "test", _write, inputs=(Port("value", "number"),),
                   outputs=(Port("files", "files"),), params=(Param("fail", "bool", False),), writes_files=True))  # fmt: skip
    r.add(NodeType("text", "Text", "test", lambda c: {"text": "x"}, outputs=(Port("text", "string"),)))
    r.add(NodeType("count", "Count", "test", _count, outputs=(Port("value", "number"),)))
    return r


def _wf(nodes: list[dict]) -> Workflow:
    return Workflow.from_dict({"format": "diffcore-workflow", "version": 1, "nodes": nodes})


CHAIN = [
    {"id": "x", "type": "const", "params": {"value": 2}},
    {"id": "y", "type": "const", "params": {"value": 3}},
    {
        "id": "sum",
        "type": "add",
        "params": {"scale": 10},
        "inputs": {"a": ["x", "value"], "b": ["y", "value"]},
    },
    {"id": "out", "type": "write", "inputs": {"value": ["sum", "value"]}},
]


def test_a_chain_computes_its_value_and_writes_it(tmp_path):
    result = Executor(_registry(), tmp_path).run(_wf(CHAIN))
    assert result.outputs["sum"]["value"] == 2 + 3 * 10
    folder = result.outputs["out"]["files"]
    assert (folder / "value.txt").read_text() == "32.0" and (folder / ".done").is_file()
    assert sorted(result.ran) == ["out", "sum", "x", "y"] and result.cached == []


def test_the_order_puts_each_node_after_what_it_reads_whatever_the_file_order():
    wf = _wf(list(reversed(CHAIN)))
    order = [n.id for n in wf.order()]
    assert order.index("x") < order.index("sum") and order.index("y") < order.index("sum") < order.index(
        "out"
    )


def test_json_round_trip_keeps_everything(tmp_path):
    wf = _wf([{**CHAIN[0], "position": [10, 20]}, *CHAIN[1:]])
    wf.name = "chain"
    again = load_workflow(wf.save(tmp_path / "wf.json"))
    assert again.to_dict() == wf.to_dict()
    assert json.loads((tmp_path / "wf.json").read_text())["nodes"][0]["position"] == [10, 20]


@pytest.mark.parametrize(
    ("nodes", "node", "port", "words"),
    [
        ([{"id": "a", "type": "nope"}], "a", None, "unknown node type 'nope'"),
        ([{"id": "a", "type": "const", "params": {"valu": 1}}], "a", "valu", "unknown param 'valu'"),
        ([{"id": "a", "type": "const", "params": {"value": "big"}}], "a", "value", "expected a float, got 'big'"),
        ([{"id": "s", "type": "add"}], "s", "a", "input 'a': missing; connect an output of type number"),
        ([{"id": "t", "type": "text"}, {"id": "s", "type": "add", "inputs": {"a": ["t", "text"]}}], "s", "a",
         "input 'a': expects number, got string from node 't' output 'text'"),
        ([{"id": "x", "type": "const"}, {"id": "s", "type": "add", "inputs": {"a": ["x", "val"]}}], "s", "a",
         "node 'x' (const) has no output 'val'"),
        ([{"id": "s", "type": "add", "inputs": {"a": ["ghost", "value"]}}], "s", "a", "no node 'ghost'"),
        ([{"id": "x", "type": "const"}, {"id": "s", "type": "add", "inputs": {"a": ["x", "value"], "c": ["x", "value"]}}],
         "s", "c", "unknown input 'c'"),
        ([{"id": "p", "type": "add", "inputs": {"a": ["q", "value"]}}, {"id": "q", "type": "add", "inputs": {"a": ["p", "value"]}}],
         "p", "a", "cycle"),
    ],
)  # fmt: skip
def test_bad_graphs_are_refused_naming_the_node_and_port(tmp_path, nodes, node, port, words):
    with pytest.raises(GraphError) as info:
        Executor(_registry(), tmp_path).run(_wf(nodes))
    assert info.value.node == node and info.value.port == port
    assert words in str(info.value) and f"'{node}'" in str(info.value)
    assert RUNS == []  # refused before anything ran


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ([], "expected a JSON object"),
        ({"format": "comfy", "nodes": []}, "format: expected 'diffcore-workflow'"),
        ({"nodes": [{"id": "a", "type": "const"}, {"id": "a", "type": "const"}]}, "node 'a': the id is used twice"),
        ({"nodes": [{"id": "s", "type": "add", "inputs": {"a": "x"}}]}, "node 's' input 'a': expected [node id, output port]"),
    ],
)  # fmt: skip
def test_malformed_files_are_refused_with_one_message(data, words):
    with pytest.raises(GraphError) as info:
        Workflow.from_dict(data)
    assert words in str(info.value)


def test_a_file_that_is_not_json_names_the_file(tmp_path):
    (tmp_path / "bad.json").write_text("{nodes: ")
    with pytest.raises(GraphError, match=r"bad\.json is not valid JSON"):
        load_workflow(tmp_path / "bad.json")


def test_unchanged_nodes_are_not_run_again_and_a_changed_one_reruns_what_reads_it(tmp_path):
    ex = Executor(_registry(), tmp_path)
    ex.run(_wf(CHAIN))
    RUNS.clear()
    again = ex.run(_wf(CHAIN))
    assert RUNS == [] and (again.outputs["out"]["files"] / "value.txt").read_text() == "32.0"
    changed = [dict(CHAIN[0]), dict(CHAIN[1], params={"value": 4}), *CHAIN[2:]]
    RUNS.clear()
    result = ex.run(_wf(changed))
    assert sorted(RUNS) == ["add", "const", "write"]  # y, sum and out; x is unchanged
    assert result.outputs["sum"]["value"] == 42.0 and "x" in result.cached


def test_the_cache_key_depends_on_params_inputs_and_type_not_on_ids_or_positions(tmp_path):
    ex = Executor(_registry(), tmp_path)
    keys = ex.keys(_wf(CHAIN))
    moved = [{**n, "position": [5, 5]} for n in CHAIN]
    assert ex.keys(_wf(moved)) == keys
    text = json.dumps(CHAIN).replace('"x"', '"first"').replace('["x"', '["first"')
    renamed = ex.keys(_wf(json.loads(text)))
    assert renamed["first"] == keys["x"] and renamed["out"] == keys["out"]
    assert keys["x"] != keys["y"]  # same type, different params
    swapped = [*CHAIN[:2], {**CHAIN[2], "inputs": {"a": ["y", "value"], "b": ["x", "value"]}}, CHAIN[3]]
    assert ex.keys(_wf(swapped))["sum"] != keys["sum"]
    defaults_written = [dict(CHAIN[0]), dict(CHAIN[1]), {**CHAIN[2], "params": {"scale": 10.0}}, CHAIN[3]]
    assert ex.keys(_wf(defaults_written))["sum"] == keys["sum"]  # 10 and 10.0 are the same parameter value
    assert Executor(_registry(), tmp_path, device="cuda").keys(_wf(CHAIN))["x"] != keys["x"]


def test_file_outputs_are_reused_from_disk_by_a_new_executor_without_running_upstream(tmp_path):
    Executor(_registry(), tmp_path).run(_wf(CHAIN))
    RUNS.clear()
    events: list[dict] = []
    result = Executor(_registry(), tmp_path).run(_wf(CHAIN), events.append)
    assert RUNS == []  # the written folder is kept; nothing upstream of it is needed
    assert (result.outputs["out"]["files"] / "value.txt").read_text() == "32.0"
    done = {e["node"]: e for e in events if e["event"] == "node_done"}
    assert done["out"]["cached"] and done["out"]["needed"] and not done["sum"]["needed"]


def test_no_cache_runs_everything_again(tmp_path):
    Executor(_registry(), tmp_path).run(_wf(CHAIN))
    RUNS.clear()
    Executor(_registry(), tmp_path, use_cache=False).run(_wf(CHAIN))
    assert sorted(RUNS) == ["add", "const", "const", "write"]


def test_a_failed_node_names_itself_and_leaves_no_cache_entry(tmp_path):
    nodes = [*CHAIN[:3], {**CHAIN[3], "params": {"fail": True}}]
    ex = Executor(_registry(), tmp_path)
    with pytest.raises(NodeError, match=r"node 'out' \(write\) failed: RuntimeError: asked to fail") as info:
        ex.run(_wf(nodes))
    assert info.value.node == "out"
    assert not any((tmp_path / "cache").iterdir())  # the half-written folder is gone
    RUNS.clear()
    ex.run(_wf(CHAIN))
    assert RUNS == ["write"]  # the upstream values were remembered; only the fixed node runs


def test_progress_inside_a_node_reaches_the_events_even_when_nothing_is_shown(tmp_path):
    events: list[dict] = []
    Executor(_registry(), tmp_path).run(_wf([{"id": "c", "type": "count"}]), events.append)
    ticks = [(e["n"], e["total"]) for e in events if e["event"] == "progress"]
    assert ticks == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert all(e["node"] == "c" and e["desc"] == "count" for e in events if e["event"] == "progress")


def test_progress_listeners_are_scoped_to_their_block():
    heard: list[int] = []
    with progress.listening(lambda d, n, t: heard.append(n)), progress.Progress(2, "a", show=False) as bar:
        bar.update(2)
    with progress.Progress(2, "b", show=False) as bar:
        assert not bar.active
        bar.update()
    assert heard == [0, 2]


def test_validate_returns_a_running_order():
    assert validate(_wf(CHAIN), _registry())[-1] == "out"
