"""The embedder's example (examples/kv_app) works: its demo runs, its table is a CRDT.

- The demo starts three node processes, stops one, writes, restarts it, and checks that
  anti-entropy caught it up; it prints a ``CHECK OK`` line and exits with 0 only then.
- The example's entry type obeys the CRDT laws and encodes canonically (hypothesis), and
  its ``updated`` hook keeps its live-note counts in step with the store.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.table.conftest import StaticReplication, node_id

from garage_table import TableData
from garage_util.crdt import LwwMap
from garage_util.db import open_db
from garage_util.testing import check_crdt_laws, lww_maps

if TYPE_CHECKING:
    from types import ModuleType

    from examples.kv_app.node import Note

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "kv_app"
#: The demo takes a few seconds and gives up by itself after 45; this only guards a hang.
DEMO_TIMEOUT_S = 120


def _load_example_node() -> ModuleType:
    """Imports examples/kv_app/node.py, a script rather than an installed module."""
    spec = importlib.util.spec_from_file_location("kv_app_node", EXAMPLE / "node.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before running it: the encoder resolves the dataclass fields' type hints
    # through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


node = _load_example_node()


def test_the_demo_catches_up_the_restarted_node() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE / "demo.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "CHECK OK: restarted node c caught up by anti-entropy" in result.stdout, output
    assert "identical on a, b and c" in result.stdout
    assert "gossip spread layout version 1 to b and c" in result.stdout
    assert "CHECK FAILED" not in result.stdout


# Few field names and short texts, so that two notes often touch the same fields.
_FIELDS = st.sampled_from(["body", "by", "color"])
_TEXTS = st.none() | st.sampled_from(["", "a", "b", "milk"])


def notes() -> st.SearchStrategy[Note]:
    """Versions of one note (merging versions of different notes is refused)."""
    return st.builds(node.Note, st.just("board"), st.just("title"), lww_maps(_FIELDS, _TEXTS))


@given(notes(), notes(), notes())
def test_notes_merge_as_a_crdt(a: Note, b: Note, c: Note) -> None:
    check_crdt_laws(a, b, c)


@given(notes())
def test_notes_encode_canonically_and_round_trip(note: Note) -> None:
    data = note.encode()
    assert data.startswith(b"KvAppNote1")
    assert node.Note.decode(data) == note
    assert node.Note.decode(data).encode() == data


@given(notes())
def test_a_note_with_every_field_cleared_is_a_tombstone(note: Note) -> None:
    assert note.is_tombstone() == (not note.text())


def test_merging_different_notes_is_refused() -> None:
    empty: LwwMap[str, str | None] = LwwMap()
    with pytest.raises(ValueError, match="two different notes"):
        node.Note("b", "x", empty).merge(node.Note("b", "y", empty))


def test_the_updated_hook_counts_live_notes_in_the_write_transaction(tmp_path: Path) -> None:
    with open_db(tmp_path / "meta") as db:
        schema = node.NoteSchema(db)
        data: TableData[Note] = TableData(
            schema, StaticReplication([node_id(1)]), db, node_id=node_id(1)
        )

        def write(title: str, text: str | None, ts: int) -> None:
            data.update_entry(
                node.Note("b", title, LwwMap.from_items({"body": (ts, text)})).encode()
            )

        write("x", "hello", 1)
        write("y", "world", 1)
        assert schema.live_notes() == {"b": 2}
        write("x", None, 2)  # the tombstone: every field cleared
        assert schema.live_notes() == {"b": 1}
        write("x", "older", 1)  # an older write merges under the tombstone: no change
        assert schema.live_notes() == {"b": 1}
        write("x", "back", 3)
        assert schema.live_notes() == {"b": 2}
