"""Splitting raw script output into bounded, decoded lines."""

from __future__ import annotations

from typing import List, Tuple

from agent.lifecycle_event.output_lines import LineAssembler


def assemble(chunks: List[bytes], max_line_bytes: int = 16) -> List[Tuple[str, str]]:
    lines: List[Tuple[str, str]] = []
    assembler = LineAssembler(
        "stdout", lambda stream, line: lines.append((stream, line)), max_line_bytes
    )
    for chunk in chunks:
        assembler.feed(chunk)
    assembler.finish()
    return lines


def test_lines_split_across_chunks_are_joined() -> None:
    assert assemble([b"hel", b"lo\nwor", b"ld\n\nlast"]) == [
        ("stdout", "hello"),
        ("stdout", "world"),
        ("stdout", ""),
        ("stdout", "last"),
    ]


def test_a_long_line_is_cut_and_continues_on_the_next() -> None:
    lines = [line for _, line in assemble([b"a" * 40 + b"\nshort\n"])]
    assert lines == ["a" * 16, "a" * 16, "a" * 8, "short"]


def test_a_cut_never_splits_a_character() -> None:
    # 15 ASCII bytes, then a two-byte character straddling the 16-byte limit.
    lines = [line for _, line in assemble([("x" * 15 + "é" + "tail\n").encode("utf-8")])]
    assert lines == ["x" * 15, "étail"]
    assert "\ufffd" not in "".join(lines)


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert assemble([b"ok \xff\xfe bytes\n"]) == [("stdout", "ok \ufffd\ufffd bytes")]


def test_a_line_at_exactly_the_limit_is_kept_whole() -> None:
    lines = [line for _, line in assemble([b"b" * 16 + b"\nnext\n"])]
    assert lines == ["b" * 16, "next"]
