"""A fleet's targets file: read back as written, refused at its line and column, never showing
a URL's password; shards that cover the fleet once and never move a target."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.fleet.targets import FleetTarget, TargetsError, read, select

NAMES = st.from_regex(r"[a-z0-9_][a-z0-9_.:@-]{0,12}", fullmatch=True)
LABELS = st.dictionaries(
    st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True),
    st.from_regex(r"[a-z0-9]{0,5}", fullmatch=True),
    max_size=3,
)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(NAMES, LABELS, st.booleans()), unique_by=lambda t: t[0], max_size=20))
def test_a_file_reads_back_as_written(
    tmp_path_factory: pytest.TempPathFactory, fleet: list[tuple[str, dict[str, str], bool]]
) -> None:
    path = tmp_path_factory.mktemp("fleet") / "targets"
    env: dict[str, str] = {}
    lines = ["# the fleet", ""]
    for index, (name, labels, from_env) in enumerate(fleet):
        url = f"postgresql://u{index}:pw{index}@h{index}/db"
        source = url
        if from_env:
            env[f"URL_{index}"] = url
            source = f"${{URL_{index}}}" if index % 2 else f"$URL_{index}"
        words = " ".join(f"{k}={v}" for k, v in labels.items())
        lines.append(f"  {name} {source} {words}  # a comment")
    path.write_text("\n".join(lines) + "\n")
    targets = read(str(path), env)
    assert [t.name for t in targets] == [name for name, _, _ in fleet]
    for index, (target, (_, labels, _)) in enumerate(zip(targets, fleet, strict=True)):
        assert target.url == f"postgresql://u{index}:pw{index}@h{index}/db"
        assert target.display == f"postgresql://u{index}:****@h{index}/db"
        assert dict(target.labels) == labels
        assert target.position is not None
        assert target.position.line == index + 3


@pytest.mark.parametrize(
    ("text", "where", "said"),
    [
        ("a postgresql://x@h/d\na postgresql://y@h/d\n", 2, "named twice (first at line 1)"),
        ("a\n", 1, "a name and a URL"),
        ("a mysql://h/d\n", 1, "starts with postgresql://"),
        ("a $NOPE\n", 1, "environment variable NOPE is not set"),
        ("a postgresql://h/d region\n", 1, "'region' is not a label"),
        ("bad/name postgresql://h/d\n", 1, "is not a target name"),
    ],
)
def test_a_bad_file_is_refused_at_its_line(
    tmp_path: Path, text: str, where: int, said: str
) -> None:
    path = tmp_path / "targets"
    path.write_text(text)
    with pytest.raises(TargetsError) as refused:
        read(str(path), {})
    assert refused.value.position is not None
    assert refused.value.position.line == where
    assert said in str(refused.value)
    assert refused.value.exit_code == 4


def test_an_error_never_shows_a_password(tmp_path: Path) -> None:
    path = tmp_path / "targets"
    path.write_text("a postgresql://u:hunter22@h/d\na postgresql://u:hunter22@h/d\n")
    with pytest.raises(TargetsError) as refused:
        read(str(path), {})
    assert "hunter22" not in str(refused.value)


@settings(max_examples=100, deadline=None)
@given(st.lists(NAMES, unique=True, max_size=60), st.integers(1, 8), NAMES)
def test_shards_cover_the_fleet_once_and_never_move_a_target(
    names: list[str], count: int, added: str
) -> None:
    fleet = [FleetTarget(n, "postgresql://h/d") for n in names]
    shards = [select(fleet, shard=f"{i}/{count}") for i in range(1, count + 1)]
    assert sorted(t.name for shard in shards for t in shard) == sorted(names)
    # another target joining the fleet moves no other one
    grown = [*fleet, FleetTarget(added + "-new", "postgresql://h/d")]
    for i, shard in enumerate(shards, 1):
        assert {t.name for t in shard} <= {t.name for t in select(grown, shard=f"{i}/{count}")}


def test_labels_select_and_bad_selections_are_refused() -> None:
    fleet = [
        FleetTarget("a", "postgresql://h/a", (("region", "eu"), ("tier", "gold"))),
        FleetTarget("b", "postgresql://h/b", (("region", "us"),)),
        FleetTarget("c", "postgresql://h/c", (("region", "eu"),)),
    ]
    assert [t.name for t in select(fleet, ["region=eu"])] == ["a", "c"]
    assert [t.name for t in select(fleet, ["region=eu", "tier=gold"])] == ["a"]
    for bad in ({"only": ["region"]}, {"shard": "0/3"}, {"shard": "4/3"}, {"shard": "x"}):
        with pytest.raises(TargetsError):
            select(fleet, **bad)
