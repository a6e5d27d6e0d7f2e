"""Whatever a person types into a pipeline file, the loader answers ConfigError or a config."""

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_mlops.config import PipelineConfig, load_pipeline_config, parse_pipeline_config
from airflow_mlops.errors import ConfigError

EXAMPLE = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "dags" / "configs" / "breast_cancer.yaml")
    .read_text()
    .replace("\n  on:", '\n  "on":')
)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _paths(child, (*prefix, index))


ALL_PATHS = [p for p in _paths(EXAMPLE) if p]


def _loads_or_config_error(call):
    try:
        result = call()
    except ConfigError as exc:
        assert str(exc).strip(), "a ConfigError must say what is wrong"
        return
    assert isinstance(result, PipelineConfig)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(ALL_PATHS), value=values, delete=st.booleans())
def test_a_mutated_example_loads_or_raises_config_error(path, value, delete):
    data = copy.deepcopy(EXAMPLE)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    _loads_or_config_error(lambda: parse_pipeline_config(data, "mutated.yaml"))


yaml_chars = st.sampled_from(list("abc:{}[]-,'\"!&*|>#%@` \n\t\\0123456789.") + ["on", "yes", "~", "---", "\x00", "é"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.lists(yaml_chars, max_size=60).map("".join), st.text(max_size=200)))
def test_garbage_yaml_text_loads_or_raises_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "garbage.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _loads_or_config_error(lambda: load_pipeline_config(path))
