"""Hostile or odd stack files: each is a located `SpecError` (`file:line:col: ...` with a hint), never a hang, a
traceback, or a file read from outside the stack.

Positions are counted by hand from the text written in each test (line 1 is the first line, column 1 the first
character).
"""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest

from provisioner.artifacts import artifact_path
from provisioner.errors import MlplatError, SpecError
from provisioner.spec import load
from provisioner.spec.loader import loads

HEAD = "apiVersion: mlplat/v1\nmetadata:\n  name: demo\n"


def write(directory: Path, text: str | bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "stack.yaml"
    if isinstance(text, str):
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def problems(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        load(path)
    return info.value


# --- 2: aliases ----------------------------------------------------------------------------------------------


def billion_laughs(levels: int = 10, width: int = 10) -> str:
    lines = [HEAD.rstrip("\n"), "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly_at_the_alias(tmp_path):
    text = billion_laughs()
    assert len(text) < 1000  # a small file that would expand to 10**10 values

    started = time.perf_counter()
    with pytest.raises(SpecError) as info:
        loads(text, tmp_path / "stack.yaml")
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0  # a behaviour bound (the old loader never returned), not a benchmark
    # x0 stands for 11 values, x1 for 111, x2 for 1111: aliases have repeated 110 + 1110 values when x3 (line 7)
    # begins, and its 8th alias *a2 (column 45) takes them past the budget of 10,000
    assert info.value.problems == [f"{tmp_path / 'stack.yaml'}:7:45: x3[7]: alias *a2 (anchor &a2 on line 6) makes "
                                   "aliases repeat more than 10000 values in all; refusing to expand them"]
    assert "small reuse" in (info.value.hint or "")


def test_modest_alias_reuse_still_loads(tmp_path):
    platform = load(write(tmp_path, HEAD + textwrap.dedent("""\
        clusters:
          - name: a
            gpu_pools: &pools
              - {name: small, accelerator: cpu}
              - {name: big, accelerator: h100, gpus_per_node: 8}
          - name: b
            gpu_pools: *pools
        storage:
          - &shared {name: one, size_gb: 10}
          - {<<: *shared, name: two}
        """))).platform

    assert [p.name for p in platform.clusters[1].gpu_pools] == ["small", "big"]
    assert platform.clusters[1].gpu_pools[1].gpus_per_node == 8
    assert [(s.name, s.size_gb) for s in platform.storage] == [("one", 10), ("two", 10)]


def test_alias_inside_its_own_anchor_is_refused_not_a_recursion_error(tmp_path):
    err = problems(write(tmp_path, HEAD + "labels: &loop [1, *loop]\n"))

    assert err.problems == [f"{tmp_path / 'stack.yaml'}:4:19: labels[1]: alias *loop is inside the value anchored "
                            "&loop on line 4: a value cannot contain itself"]


def test_absurdly_deep_nesting_is_refused_before_anything_recurses(tmp_path):
    # libyaml stops at 1,000 levels itself; this limit also guards the pure-Python loader and the recursive walks
    err = problems(write(tmp_path, HEAD + "labels: " + "[" * 100 + "]" * 100 + "\n"))

    [problem] = err.problems
    assert problem.startswith(f"{tmp_path / 'stack.yaml'}:4:72: labels") and "nested more than 64" in problem


# --- 5: encodings and odd characters -------------------------------------------------------------------------


def test_non_utf8_file_is_an_error_at_the_first_bad_byte(tmp_path):
    path = write(tmp_path, HEAD.encode() + "description: Caf\xe9 na\xefve\n".encode("latin-1"))

    err = problems(path)

    assert err.problems == [f"{path}:4:17: the stack file is not UTF-8 text (byte 0xe9 at offset 61)"]
    assert err.hint == "save the file as UTF-8"


def test_binary_garbage_is_an_error_at_its_first_byte(tmp_path):
    path = write(tmp_path, b"\xff\xfe\x00garbage")

    assert problems(path).problems == [f"{path}:1:1: the stack file is not UTF-8 text (byte 0xff at offset 0; it "
                                       "looks like UTF-16)"]


def test_bad_byte_on_a_later_line_after_a_utf8_bom(tmp_path):
    # the mark is 3 bytes but no character: the bad byte is line 3's 10th character, at byte 3 + 22 + 10 + 9
    path = write(tmp_path, b"\xef\xbb\xbfapiVersion: mlplat/v1\nmetadata:\n  name: x\x80\n")

    assert problems(path).problems == [f"{path}:3:10: the stack file is not UTF-8 text (byte 0x80 at offset 44)"]


@pytest.mark.parametrize(("encoding", "where", "byte"), [("utf-16", "1:1", "0xff at offset 0"),
                                                        ("utf-16-be", "1:1", "0x00 at offset 0"),
                                                        ("utf-16-le", "1:2", "0x00 at offset 1"),
                                                        ("utf-32", "1:1", "0xff at offset 0")])
def test_utf16_and_utf32_files_are_named(tmp_path, encoding, where, byte):
    path = write(tmp_path, HEAD.encode(encoding))

    err = problems(path)

    wide = "UTF-32" if "32" in encoding else "UTF-16"
    assert err.problems == [f"{path}:{where}: the stack file is not UTF-8 text (byte {byte}; it looks like {wide})"]
    assert err.hint == "save the file as UTF-8"


def test_column_of_a_bad_byte_counts_characters_not_bytes(tmp_path):
    path = write(tmp_path, HEAD.encode() + "description: h\u00e9h\u00e9 ".encode() + b"\xff\n")

    assert problems(path).problems[0].startswith(f"{path}:4:19: ")


def test_nul_byte_is_an_error_at_its_position(tmp_path):
    path = write(tmp_path, b"apiVersion: mlplat/v1\nmetadata:\n  name: de\x00mo\n")

    err = problems(path)

    assert err.problems == [f"{path}:3:11: character U+0000 is not allowed in a stack file (control characters "
                            "and unpaired surrogates cannot be read)"]
    assert "UTF-8" in (err.hint or "")


def test_utf8_byte_order_mark_is_skipped(tmp_path):
    stack = load(write(tmp_path, b"\xef\xbb\xbf" + HEAD.encode()))

    assert stack.platform.metadata.name == "demo"
    assert loads("\ufeff" + HEAD).platform.metadata.name == "demo"


ODD_BYTES = {
    "invalid utf-8 in the middle": HEAD.encode() + b"description: ok \xc3\x28 then\n",
    "latin-1 text": "apiVersion: mlplat/v1\nmetadata:\n  name: demo\n  description: \xc0 la carte\n".encode("latin-1"),
    "truncated sequence at the end": HEAD.encode() + b"description: \xe2\x82",
    "encoded lone surrogate": HEAD.encode() + "description: \ud800\n".encode("utf-8", "surrogatepass"),
    "nul bytes": b"\x00\x00\x00\x00",
    "nul in a key": HEAD.encode() + b"stor\x00age: []\n",
    "bell character": HEAD.encode() + b"description: \x07\n",
    "lone 0x85 byte": HEAD.encode() + b"description: a\x85b\n",
    "utf-8 NEL line break": HEAD.encode() + "description: a\x85b: c\n".encode(),
    "utf-16 with a BOM": HEAD.encode("utf-16"),
    "utf-16 without a BOM": HEAD.encode("utf-16-le"),
    "bom inside the text": HEAD.encode() + "description: \ufeffx\n".encode(),
    "binary": bytes(range(256)),
}


@pytest.mark.parametrize("data", ODD_BYTES.values(), ids=ODD_BYTES.keys())
def test_odd_bytes_are_located_spec_errors_never_another_exception(tmp_path, data):
    path = write(tmp_path, data)

    with pytest.raises(SpecError) as info:  # any other exception fails the test
        load(path)

    for problem in info.value.problems:
        line, col = problem.removeprefix(f"{path}:").split(":")[:2]
        assert problem.startswith(f"{path}:") and line.isdigit() and col.isdigit(), problem


CLI_BYTES = {
    "latin-1": (HEAD.encode() + "description: Caf\xe9\n".encode("latin-1"),
                "4:17: the stack file is not UTF-8 text (byte 0xe9 at offset 61)"),
    "binary": (b"\xff\xfe\x00garbage", "1:1: the stack file is not UTF-8 text (byte 0xff at offset 0; it looks "
                                      "like UTF-16)"),
    "utf-16 with a BOM": (HEAD.encode("utf-16"), "1:1: the stack file is not UTF-8 text (byte 0xff at offset 0; it "
                                                 "looks like UTF-16)"),
    "nul": (b"apiVersion: mlplat/v1\nmetadata:\n  name: de\x00mo\n", "3:11: character U+0000 is not allowed"),
}


@pytest.mark.parametrize(("data", "problem"), CLI_BYTES.values(), ids=CLI_BYTES.keys())
def test_cli_validate_reports_odd_bytes_at_file_line_col_without_a_traceback(tmp_path, cli, data, problem):
    path = write(tmp_path, data)

    result = cli("validate", "-f", str(path), cwd=tmp_path, check=False)

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert f"{path}:{problem}" in " ".join(output.split()), output  # rich may wrap a long line
    assert "hint:" in output and "UTF-8" in output


@pytest.mark.parametrize("text", ["a: \ud800\n", "a: \x00\n", "\x1b[31m"], ids=["surrogate", "nul", "escape"])
def test_odd_characters_in_text_given_as_str_are_spec_errors(text):
    with pytest.raises(SpecError) as info:
        loads(text, "s.yaml")
    assert info.value.problems[0].startswith("s.yaml:1:")


# --- 8: artifacts stay inside the stack directory -------------------------------------------------------------


def registry_stack(artifact: str, roots: str = "") -> str:
    return HEAD + textwrap.dedent("""\
        registry:
          name: models{roots}
          models:
            - name: iris
              version: "1"
              artifact: {artifact}
        """).format(artifact=artifact, roots=roots)


@pytest.fixture
def layout(tmp_path):
    """tmp/stack/stack.yaml, tmp/stack/models/iris.json inside; tmp/outside.json and tmp/shared/iris.json outside."""
    (tmp_path / "stack" / "models").mkdir(parents=True)
    (tmp_path / "stack" / "models" / "iris.json").write_text("{}")
    (tmp_path / "outside.json").write_text("{}")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "iris.json").write_text("{}")
    return tmp_path


def test_artifact_inside_the_stack_directory_loads(layout):
    stack = load(write(layout / "stack", registry_stack("models/iris.json")))

    assert stack.platform.registry.models[0].artifact == "models/iris.json"


@pytest.mark.parametrize("artifact", ["../outside.json", "{outside}", "/etc/passwd", "models/../../outside.json"],
                         ids=["relative", "absolute", "etc-passwd", "dotdot-inside"])
def test_artifact_outside_the_stack_directory_is_refused_at_its_value(layout, artifact):
    artifact = artifact.format(outside=layout / "outside.json")
    path = write(layout / "stack", registry_stack(artifact))

    err = problems(path)

    resolved = Path("/etc/passwd").resolve() if artifact == "/etc/passwd" else (layout / "outside.json").resolve()
    assert err.problems == [f"{path}:9:17: registry.models[0].artifact: artifact {artifact!r} resolves to "
                            f"{resolved}, outside the stack directory {(layout / 'stack').resolve()}"]
    assert err.hint == "move the file under the stack directory or list its directory under registry.artifact_roots"


def test_symlink_inside_the_stack_directory_pointing_outside_is_refused(layout):
    os.symlink(layout / "outside.json", layout / "stack" / "models" / "link.json")
    path = write(layout / "stack", registry_stack("models/link.json"))

    [problem] = problems(path).problems

    assert problem.startswith(f"{path}:9:17: registry.models[0].artifact: ")
    assert f"resolves to {(layout / 'outside.json').resolve()}, outside the stack directory" in problem


@pytest.mark.parametrize("root", ["../shared", "{shared}"], ids=["relative", "absolute"])
def test_artifact_under_a_listed_artifact_root_is_accepted(layout, root):
    root = root.format(shared=layout / "shared")
    path = write(layout / "stack", registry_stack("../shared/iris.json", f"\n  artifact_roots: [{root}]"))

    registry = load(path).platform.registry

    assert registry.artifact_roots == [root]
    model = registry.models[0]
    assert artifact_path(model, path.parent, registry.artifact_roots) == layout / "stack" / "../shared/iris.json"


def test_artifact_roots_do_not_open_other_directories(layout):
    path = write(layout / "stack", registry_stack("../outside.json", "\n  artifact_roots: [../shared]"))

    [problem] = problems(path).problems

    assert "outside the stack directory" in problem and "every registry.artifact_roots entry" in problem


@pytest.mark.parametrize("uri", ["s3://bucket/key", "gs://bucket/models/iris.json", "https://example.com/iris"])
def test_artifact_uris_are_not_checked_against_the_stack_directory(layout, uri):
    stack = load(write(layout / "stack", registry_stack(uri)))

    assert stack.platform.registry.models[0].artifact == uri


def test_artifact_path_refuses_a_symlink_swapped_after_validation(layout):
    path = write(layout / "stack", registry_stack("models/iris.json"))
    model = load(path).platform.registry.models[0]
    target = layout / "stack" / "models" / "iris.json"
    target.unlink()
    os.symlink(layout / "outside.json", target)

    with pytest.raises(MlplatError) as info:
        artifact_path(model, path.parent)

    assert "outside the stack directory" in info.value.message
    assert "artifact_roots" in (info.value.hint or "")


# --- 10: strict numbers and booleans; keys without effect ----------------------------------------------------


def only_problem(tmp_path: Path, text: str) -> str:
    [problem] = problems(write(tmp_path, HEAD + textwrap.dedent(text))).problems
    return problem.removeprefix(f"{tmp_path / 'stack.yaml'}:")


@pytest.mark.parametrize(("written", "shown"), [
    ("yes", "true"),
    ("true", "true"),
    ('"20"', "the text '20' (remove the quotes)"),
    ("2.5", "2.5"),
    ("lots", "the text 'lots'"),
], ids=["yes", "true", "quoted", "fraction", "word"])
def test_size_gb_must_be_a_whole_number(tmp_path, written, shown):
    problem = only_problem(tmp_path, f"""\
        storage:
          - name: shared
            size_gb: {written}
        """)

    assert problem == f"6:14: storage[0].size_gb: expected a whole number, got {shown}"


@pytest.mark.parametrize("written", ['"20"', "true"])
def test_serving_weight_must_be_a_whole_number(tmp_path, written):
    problem = only_problem(tmp_path, f"""\
        serving:
          - name: iris
            paths:
              production: {{model: "iris:1", weight: {written}}}
        """)

    assert problem.startswith("7:45: serving[0].paths.production.weight: expected a whole number, got ")


@pytest.mark.parametrize(("written", "shown"), [('"yes"', "the text 'yes' (remove the quotes)"), ("1", "1"), ('"true"',
                                                "the text 'true' (remove the quotes)")])
def test_spot_must_be_true_or_false(tmp_path, written, shown):
    problem = only_problem(tmp_path, f"""\
        clusters:
          - name: train
            gpu_pools:
              - {{name: p, accelerator: cpu, spot: {written}}}
        """)

    assert problem == f"7:43: clusters[0].gpu_pools[0].spot: expected true or false, got {shown}"


def test_mirror_percent_on_a_split_path_is_an_error_saying_why(tmp_path):
    problem = only_problem(tmp_path, """\
        serving:
          - name: iris
            paths:
              production: {model: "iris:1", weight: 90}
              experimental: {model: "iris:2", weight: 10, mirror_percent: 50}
        """)

    assert problem.startswith("8:51: serving[0].paths.experimental.mirror_percent: mirror_percent only applies to "
                              "a path with mode: shadow")


def test_mirror_percent_on_a_shadow_path_is_accepted(tmp_path):
    exp = load(write(tmp_path, HEAD + textwrap.dedent("""\
        serving:
          - name: iris
            paths:
              production: {model: "iris:1"}
              experimental: {model: "iris:2", mode: shadow, mirror_percent: 50}
        """))).platform.serving[0].paths.experimental

    assert exp.mirror_percent == 50


def test_gpus_on_a_cpu_serving_path_is_an_error(tmp_path):
    problem = only_problem(tmp_path, """\
        serving:
          - name: iris
            paths:
              production: {model: "iris:1", gpus: 2}
        """)

    assert problem == ("7:37: serving[0].paths.production.gpus: gpus is 2 but accelerator: cpu has no GPUs; remove "
                       "gpus, or pick a GPU accelerator")


def test_gpus_per_node_on_a_cpu_pool_is_an_error(tmp_path):
    problem = only_problem(tmp_path, """\
        clusters:
          - name: train
            gpu_pools:
              - {name: p, accelerator: cpu, gpus_per_node: 4}
        """)

    assert problem == ("7:37: clusters[0].gpu_pools[0].gpus_per_node: gpus_per_node is 4 but accelerator: cpu has "
                       "no GPUs; remove gpus_per_node, or pick a GPU accelerator")
