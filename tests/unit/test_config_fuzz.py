"""Whatever a person types into a pipeline file, the loader answers ConfigError or a config.

Values first (a mutated example), then structure: nesting, anchors and aliases,
duplicate keys, binary junk and huge scalars, each within a bounded time.
"""

import copy
import time
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_mlops.config import PipelineConfig, load_pipeline_config, parse_pipeline_config
from airflow_mlops.errors import ConfigError

EXAMPLE_TEXT = (Path(__file__).resolve().parents[2] / "dags" / "configs" / "breast_cancer.yaml").read_text()
EXAMPLE = yaml.safe_load(EXAMPLE_TEXT.replace("\n  on:", '\n  "on":'))
# Generous for a loaded 2-core machine; a hang or an expansion blow-up takes minutes or never ends.
SECONDS_PER_FILE = 5.0

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


def _file_loads_or_config_error(tmp_path_factory, content: str | bytes):
    path = tmp_path_factory.mktemp("fuzz") / "fuzzed.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    started = time.monotonic()
    _loads_or_config_error(lambda: load_pipeline_config(path))
    assert time.monotonic() - started < SECONDS_PER_FILE


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


FILE_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


@FILE_SETTINGS
@given(text=st.one_of(st.lists(yaml_chars, max_size=60).map("".join), st.text(max_size=200)))
def test_garbage_yaml_text_loads_or_raises_config_error(tmp_path_factory, text):
    _file_loads_or_config_error(tmp_path_factory, text)


# ---------------------------------------------------------------------- structure

anchors = st.sampled_from(["a", "b", "c"])
keys = st.sampled_from(["pipeline", "data", "seed", "k", "k", "1", "1.0", "<<", "on"])
leaves = st.one_of(st.sampled_from(["1", "true", "x", "~", "''", "0.5", "on", "s3:///k", "../x"]), anchors.map("*{}".format))
flow_values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(keys, inner), max_size=5).map(
            lambda pairs: "{" + ", ".join(f"{key}: {value}" for key, value in pairs) + "}"
        ),
        st.tuples(anchors, inner).map(lambda pair: f"&{pair[0]} {pair[1]}"),
    ),
    max_leaves=30,
)
EXAMPLE_LINES = EXAMPLE_TEXT.splitlines()


def _spliced(line_index: int, fragment: str, replace: bool) -> str:
    """The example with `fragment` replacing a line's value (or added as a top-level key before it)."""
    lines = list(EXAMPLE_LINES)
    index = line_index % len(lines)
    key, colon, _ = lines[index].partition(":")
    if replace and colon:
        lines[index] = f"{key}: {fragment}"
    else:
        lines.insert(index, f"k{index}: {fragment}")
    return "\n".join(lines) + "\n"


@FILE_SETTINGS
@given(fragment=flow_values, line_index=st.integers(0, 200), replace=st.booleans())
def test_anchors_aliases_and_duplicate_keys_load_or_raise_config_error(tmp_path_factory, fragment, line_index, replace):
    _file_loads_or_config_error(tmp_path_factory, _spliced(line_index, fragment, replace))


@FILE_SETTINGS
@given(
    depth=st.integers(0, 400),
    opener=st.sampled_from(["[", "{k: ", "- ", "k:\n", "&a [", "[*a, "]),
    closed=st.booleans(),
    line_index=st.integers(0, 200),
)
def test_deep_nesting_loads_or_raises_config_error(tmp_path_factory, depth, opener, closed, line_index):
    closer = {"[": "]", "{k: ": "}", "&a [": "]", "[*a, ": "]"}.get(opener, "")
    nested = opener * depth + "1" + (closer * depth if closed else "")
    _file_loads_or_config_error(tmp_path_factory, _spliced(line_index, nested, replace=True))


@FILE_SETTINGS
@given(levels=st.integers(1, 12), fanout=st.integers(1, 12), use=st.sampled_from(["pipeline", "owner", "params", "extra"]))
def test_alias_expansion_loads_or_raises_config_error(tmp_path_factory, levels, fanout, use):
    lines = ["x0: &x0 [" + ", ".join(["lol"] * fanout) + "]"]
    for level in range(1, levels):
        lines.append(f"x{level}: &x{level} [" + ", ".join([f"*x{level - 1}"] * fanout) + "]")
    last = f"*x{levels - 1}"
    text = EXAMPLE_TEXT.replace("  params: {", f"  params: {{p: {last}, ") if use == "params" else EXAMPLE_TEXT
    if use in ("pipeline", "owner"):
        text = "\n".join(f"{use}: {last}" if line.startswith(f"{use}:") else line for line in text.splitlines())
    _file_loads_or_config_error(tmp_path_factory, "\n".join(lines) + "\n" + text)


@FILE_SETTINGS
@given(
    junk=st.binary(max_size=400),
    at=st.integers(0, len(EXAMPLE_TEXT)),
    whole=st.booleans(),
)
def test_binary_junk_loads_or_raises_config_error(tmp_path_factory, junk, at, whole):
    example = EXAMPLE_TEXT.encode()
    _file_loads_or_config_error(tmp_path_factory, junk if whole else example[:at] + junk + example[at:])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    size=st.integers(1_000, 1_100_000),
    char=st.sampled_from(["A", "9", "é", " ", "[", "'"]),
    line_index=st.integers(0, 200),
)
def test_huge_scalars_load_or_raise_config_error(tmp_path_factory, size, char, line_index):
    _file_loads_or_config_error(tmp_path_factory, _spliced(line_index, char * size, replace=True))
