"""Spec YAML that is too big, too deep or odd is one clear error, never a hang or a traceback.

Reliability battery cases 2 and 9 and the scientific-notation float (see
``benchmarks/results/reliability_battery.md``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from support.toys import toys

from anchorage.core import load_spec
from anchorage.core.errors import SpecError

BASE = """
model:
  type: toy_model
  num_classes: 3
  matcher: {type: toy_matcher, threshold: 0.4}
"""


@pytest.fixture(autouse=True)
def _toys():
    with toys():
        yield


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def laughs(levels: int = 8, fanout: int = 10) -> str:
    """A ~1 KB "billion laughs" built from mappings: fanout**levels nodes once expanded."""
    lines = ["a0: &a0 {k: v, x: 1}"]
    for i in range(1, levels + 1):
        refs = ", ".join(f"k{j}: *a{i - 1}" for j in range(fanout))
        lines.append(f"a{i}: &a{i} {{{refs}}}")
    return "\n".join(lines) + f"\nmodel: *a{levels}\n"


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    # before: ran past 60 s at 2.8 GB
    path = write(tmp_path, laughs())
    start = time.perf_counter()
    with pytest.raises(SpecError, match="refused: the YAML expands to more than") as info:
        load_spec(path)
    assert time.perf_counter() - start < 5
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_an_alias_bomb_in_an_override_is_refused() -> None:
    value = "{" + laughs(7).replace("\n", ", ").rstrip(", ") + "}"
    from anchorage.core.spec import parse_override

    with pytest.raises(SpecError, match="--set model.x=.*refused: the YAML expands"):
        parse_override(f"model.x={value}")


def test_modest_aliases_still_load() -> None:
    from anchorage.core.spec import load_yaml_text

    assert load_yaml_text("a: &x {b: [1, 2]}\nc: *x\nd: {<<: *x, e: 3}\n", "t") == {
        "a": {"b": [1, 2]},
        "c": {"b": [1, 2]},
        "d": {"b": [1, 2], "e": 3},
    }


def test_deep_nesting_is_one_line(tmp_path: Path) -> None:
    # before: RecursionError traceback
    path = write(tmp_path, "model: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(SpecError, match="nested deeper than 100 levels") as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_unhashable_key_names_file_and_line(tmp_path: Path) -> None:
    # before: TypeError: unhashable type: 'list'
    path = write(tmp_path, "model:\n  ? [1, 2]\n  : x\n")
    with pytest.raises(SpecError, match=r"s.yaml:2:5: .*mapping key must be a scalar, got a list"):
        load_spec(path)


@pytest.mark.parametrize("value", ["99999999999999999999", "-9223372036854775809"])
def test_integers_beyond_int64_are_refused(tmp_path: Path, value: str) -> None:
    # before: accepted, then a torch overflow when the model was built
    path = write(tmp_path, BASE)
    with pytest.raises(SpecError, match=f"integer {value} is out of range"):
        load_spec(path, [f"model.num_classes={value}"])
    with pytest.raises(SpecError, match=f"s.yaml:4:16: .*integer {value} is out of range"):
        load_spec(write(tmp_path, BASE.replace("num_classes: 3", f"num_classes: {value}")))


@pytest.mark.parametrize(
    ("text", "expected"), [("1e-4", 1e-4), ("1E-1", 0.1), ("5e-1", 0.5), (".5e-1", 0.05)]
)
def test_scientific_notation_is_a_float(tmp_path: Path, text: str, expected: float) -> None:
    # before: '1e-4' (str) was refused for a float field (YAML 1.1 needs 1.0e-4)
    spec = load_spec(write(tmp_path, BASE), [f"model.matcher.threshold={text}"])
    assert spec.data["model"]["matcher"]["threshold"] == pytest.approx(expected)
    in_file = write(tmp_path, BASE.replace("threshold: 0.4", f"threshold: {text}"))
    assert load_spec(in_file).data["model"]["matcher"]["threshold"] == pytest.approx(expected)


def test_plain_integers_and_strings_are_unchanged(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE), ["model.num_classes=12"])
    assert spec.data["model"]["num_classes"] == 12
    assert isinstance(spec.data["model"]["num_classes"], int)
    from anchorage.core.spec import load_yaml_text

    assert load_yaml_text("[e5, 1e, 1.0e+4, 0x1F]", "t") == ["e5", "1e", 1.0e4, 31]


def test_a_long_string_aliased_many_times_is_refused() -> None:
    from anchorage.core.spec import load_yaml_text

    text = f"s: &s {'x' * 10_000}\nl: [" + ", ".join(["*s"] * 2_000) + "]\n"
    with pytest.raises(SpecError, match="t: refused: the YAML expands to more than .* bytes"):
        load_yaml_text(text, "t")


def test_a_symlink_loop_in_base_is_one_line_naming_the_chain(tmp_path: Path) -> None:
    tmp_path = tmp_path.resolve()
    (tmp_path / "loopA.yaml").symlink_to("loopB.yaml")
    (tmp_path / "loopB.yaml").symlink_to("loopA.yaml")
    top = tmp_path / "top.yaml"
    top.write_text("_base_: loopA.yaml\n")
    a, b = tmp_path / "loopA.yaml", tmp_path / "loopB.yaml"
    with pytest.raises(SpecError) as info:
        load_spec(top)
    assert str(info.value) == (f"{a}: symlink loop: {a} -> {b} -> {a} (named in _base_ of {top})")


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda p: p.mkdir(), "exists but is a folder, not a spec file"),
        (lambda p: os.mkfifo(p), "exists but is a named pipe (FIFO), not a spec file"),
        (
            lambda p: p.symlink_to("/dev/zero"),
            "exists but is a character device (PATH -> /dev/zero)",
        ),
        (
            lambda p: p.symlink_to("gone.yaml"),
            "broken symlink: PATH -> DIR/gone.yaml does not exist",
        ),
    ],
    ids=["folder", "fifo", "device", "broken-link"],
)
def test_a_base_that_is_not_a_regular_file_says_what_it_is(
    tmp_path: Path,
    make,
    what: str,  # noqa: ANN001
) -> None:
    tmp_path = tmp_path.resolve()
    base = tmp_path / "base.yaml"
    make(base)
    top = tmp_path / "top.yaml"
    top.write_text("_base_: base.yaml\n")
    with pytest.raises(SpecError) as info:
        load_spec(top)  # returns at once: a FIFO is never opened
    message = str(info.value)
    assert message.startswith(f"{base}: ") and message.endswith(f"(named in _base_ of {top})")
    assert what.replace("PATH", str(base)).replace("DIR", str(tmp_path)) in message


def test_dev_zero_as_base_is_a_device_not_a_missing_file(tmp_path: Path) -> None:
    top = tmp_path / "top.yaml"
    top.write_text("_base_: /dev/zero\n")
    with pytest.raises(SpecError, match=r"^/dev/zero: exists but is a character device, not a"):
        load_spec(top)
