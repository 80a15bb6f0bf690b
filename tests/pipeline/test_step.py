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


def _plain():
    return 1, 2


@pytest.mark.parametrize(
    "outputs",
    ["model", ("a", "a"), (), ("a", 1), ("not a name",), 3],
)
def test_outputs_must_be_distinct_names_in_a_tuple(outputs):
    # "model" was five outputs m, o, d, e, l; ("a", "a") silently lost the first value
    with pytest.raises(PipelineError, match="declares outputs") as err:
        step(outputs=outputs)(_plain)
    assert "outputs=('train', 'valid')" in (err.value.hint or "")


@pytest.mark.parametrize("name", ["", "a-b", "../up", "two words", "1st", 7, "<lambda>"])
def test_a_step_name_must_be_an_identifier(name):
    with pytest.raises(PipelineError, match="cannot be named") as err:
        step(name=name)(_plain)
    assert "train_model" in (err.value.hint or "")


def test_unicode_identifiers_and_list_outputs_are_fine():
    made = step(name="nettoyé", outputs=["x", "y"])(_plain)
    assert made.name == "nettoyé" and made.outputs == ("x", "y")


@step
def spread(first, /, *rest, scale=1, **extra):
    return {"first": first, "rest": list(rest), "scale": scale, "extra": extra}


@pipeline
def spreading():
    spread(1, 2, 3, scale=4, z=5)


def test_star_args_kwargs_and_positional_only_reach_the_step_as_called(tmp_path):
    # the runner called func(**arguments): first=..., rest=(2, 3), extra={'z': 5} as
    # keywords, i.e. a TypeError or, for (*args, **kwargs), everything inside kwargs
    from shipml.pipeline.cache import ArtifactCache
    from shipml.pipeline.context import RunContext
    from shipml.pipeline.executor import execute

    node = spreading.build().node("spread")
    ctx = RunContext(None, None, {}, tmp_path)  # type: ignore[arg-type]
    outputs, _ = execute(node, dict(node.arguments), ctx, ArtifactCache(tmp_path / "c"))
    assert outputs["output"] == {"first": 1, "rest": [2, 3], "scale": 4, "extra": {"z": 5}}


def _positional_only(a=1, /, k=2):
    pass


def _spread_params(a=1, *rest, k=2, **extra):
    pass


@pytest.mark.parametrize(
    ("func", "shown"),
    [(_positional_only, "a (positional-only)"), (_spread_params, "*rest, **extra")],
)
def test_a_pipeline_takes_named_parameters_only(func, shown):
    # positional-only: a TypeError traceback at build; *rest/**extra: "needs a value for
    # extra, rest", then --param rest=3 landed in **extra
    with pytest.raises(PipelineError, match=re.escape(f"has the parameter(s) {shown}")) as err:
        pipeline(func)
    assert "--param NAME=VALUE" in (err.value.hint or "")


def test_a_huge_value_of_the_wrong_type_is_shown_cut_short():
    # the message quoted the whole value: a 1 MB --param gave a 1 MB error
    with pytest.raises(PipelineError, match=r"got \[0, 0, .*\.\.\. \(\d[\d,]* characters\)") as err:
        flow.build({"scale": [0] * 300_000})
    assert len(err.value.message) < 200


@step
def total(*parts):
    return sum(parts)


@pipeline
def summing():
    total(halves(1)[0], halves(2)[1])


def test_step_outputs_inside_a_list_or_star_args_are_named_in_the_error():
    # "got tuple for 'parts', which is neither a step output, a dataset nor a JSON value;
    # hint: pass ... plain values (numbers, strings, lists)": a list was the mistake
    from shipml.pipeline.executor import check_json

    node = summing.build().node("total")
    with pytest.raises(
        PipelineError, match=r"output\(s\) of halves, halves_2 inside a tuple"
    ) as err:
        check_json("total", "parts", node.arguments["parts"])
    assert "one parameter per output" in (err.value.hint or "")


@pytest.mark.parametrize("name", ["a b", "../p", ""])
def test_a_pipeline_name_must_be_an_identifier(name):
    with pytest.raises(PipelineError, match="a pipeline cannot be named"):
        pipeline(name=name)(_plain)
