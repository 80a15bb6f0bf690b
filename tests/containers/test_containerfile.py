"""The Containerfiles: the same inputs give the same text; order keeps the cache useful."""

from __future__ import annotations

from shipml.containers.containerfile import (
    USER,
    data_recipe,
    project_recipe,
    render,
    serve_recipe,
)


def test_serve_containerfile_is_non_root_with_healthcheck_and_port() -> None:
    text = render(serve_recipe("localhost/shipml-base:bookworm", "penguins", "3", skops=False))
    assert text.startswith("# shipml serve image")
    assert "FROM localhost/shipml-base:bookworm\n" in text
    assert f"USER {USER}\n" in text and not USER.startswith("0")
    assert "EXPOSE 8080\n" in text and "HEALTHCHECK " in text
    assert 'ENTRYPOINT ["shipml"]' in text
    assert '"serve", "/model", "--name", "penguins", "--model-version", "3"' in text
    assert "full.txt" not in text and "skops.txt" not in text  # the runtime only
    # what changes least comes first: dependencies, then shipml, then the model
    order = [text.index(s) for s in ("runtime.txt", "shipml-src", "COPY model")]
    assert order == sorted(order)
    assert "skops.txt" in render(serve_recipe("b", "m", "1", skops=True))


def test_project_kinds_share_their_first_layers() -> None:
    texts = {
        k: render(project_recipe(k, "base", project_requirements=False))
        for k in ("train", "test", "notebook")
    }
    train = texts["train"]
    end = train.index("\n", train.index("RUN pip install -r /opt/shipml/requirements/full.txt"))
    prefix = train[train.index("FROM") : end]
    for kind, text in texts.items():
        assert prefix.split("\n", 1)[1] in text, kind
    serve = render(serve_recipe("base", "m", "1", skops=False))
    runtime = prefix[: prefix.index("# The full toolset")]
    assert runtime.split("\n", 1)[1] in serve
    assert 'ENTRYPOINT ["shipml", "test"]' in texts["test"]
    assert "RUN ln -s /results /project/results" in texts["test"]
    assert "COPY --chown=10001:10001 project /project" in texts["train"]
    assert 'CMD ["run"]' in texts["train"]
    assert "notebook.txt" in texts["notebook"] and "EXPOSE 8888" in texts["notebook"]


def test_rendering_is_deterministic() -> None:
    one = render(data_recipe("python:3.11-slim"))
    assert one == render(data_recipe("python:3.11-slim"))
    assert 'CMD ["data", "verify", "/data"]' in one
