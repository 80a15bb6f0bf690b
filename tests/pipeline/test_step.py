import re

import pytest

from shipml.errors import PipelineError
from shipml.pipeline import dataset, pipeline, step


@step
def load(raw=dataset("d")):
    return raw


@step(outputs=("a", "b"))
def halves(x, k: int = 2):
    return x, x


@step
def join(a, b, scale: float = 1.0):
    return (a, b, scale)


@pipeline
def flow(scale: float = 2.0):
    a, b = halves(load())
    join(a, b, scale=scale)


def test_calls_inside_a_pipeline_build_the_dag():
    graph = flow.build()
    assert [n.name for n in graph.nodes] == ["load", "halves", "join"]
    assert graph.edges() == [("load", "halves"), ("halves", "join")]
    assert graph.node("join").arguments["scale"] == 2.0
    assert graph.params == {"scale": 2.0}


def test_steps_are_plain_functions_outside_a_pipeline():
    assert halves(3) == (3, 3)
    assert join(1, 2) == (1, 2, 1.0)


def test_parameter_overrides_and_unknown_parameters():
    assert flow.build({"scale": 5}).node("join").arguments["scale"] == 5
    with pytest.raises(PipelineError, match="no parameter 'scael'"):
        flow.build({"scael": 1})


def test_a_parameter_value_of_the_wrong_type_is_refused_before_any_step_runs():
    @pipeline
    def typed(n: int = 3, rate: float = 0.5, on: bool = False, tag: str = "a", depth=4):
        join(n, rate, scale=depth)

    resolved = typed.build({"n": 7, "rate": 1, "on": True, "tag": 2024, "depth": 9}).params
    assert resolved == {"n": 7, "rate": 1, "on": True, "tag": 2024, "depth": 9}
    refused = [
        ("n", "abc", "'n' is int, got 'abc' (str)"),
        ("n", 5.5, "'n' is int, got 5.5 (float)"),
        ("n", True, "'n' is int, got True (bool)"),
        ("rate", "fast", "'rate' is float, got 'fast' (str)"),
        ("on", 1, "'on' is bool, got 1 (int)"),
        ("depth", "deep", "'depth' is int, got 'deep' (str)"),  # unannotated: its default's type
    ]
    for name, value, message in refused:
        with pytest.raises(PipelineError, match=re.escape(message)) as err:
            typed.build({name: value})
        assert f"--param {name}=" in (err.value.hint or "")


def test_wrong_arguments_name_the_step_and_its_signature():
    @pipeline
    def bad():
        join(1)

    with pytest.raises(PipelineError) as err:
        bad.build()
    assert "step 'join'" in err.value.message and "(a, b, scale" in (err.value.hint or "")


def test_a_step_called_twice_gets_distinct_names():
    @pipeline
    def twice():
        x = load()
        halves(x)
        halves(x)

    assert [n.name for n in twice.build().nodes] == ["load", "halves", "halves_2"]


def test_empty_pipeline_is_an_error():
    @pipeline
    def empty():
        return None

    with pytest.raises(PipelineError, match="calls no step"):
        empty.build()
