"""Hostile data files: a generated corpus of malformed files, each `chatforge check` -> exit 2 naming the file
and the line (or record), never a traceback; bounded memory on a 100 MB line; a Hypothesis property test of
format detection + validation (the only outcomes: a valid example or a named problem)."""

import json
import os
import subprocess
import sys

import pytest

GOOD = json.dumps({"question": "What is it?", "answer": "A lamp."})
DEEP = 100_000  # nesting levels: deeper than Python's recursion limit


def _parquet(table_kwargs):
    def make(path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(table_kwargs()), path)
    return make


def _truncated_parquet(path):
    _parquet(lambda: {"question": ["q"] * 50, "answer": ["a"] * 50})(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _struct_column():
    import pyarrow as pa

    return {"messages": pa.array([[{"role": "user", "content": 1}]])}


# name -> (bytes, or a function writing the file; the line the report must name, with the record where records
# share a line)
CORPUS = {
    "truncated_utf8.jsonl": ((GOOD + "\n" + GOOD[:-3] + "é").encode()[:-1], 2),
    "bad_byte.jsonl": (GOOD.encode() + b"\n" + b'{"question": "\xff", "answer": "x"}\n', 2),
    "utf16_bom.jsonl": (("\ufeff" + GOOD + "\n{oops}\n").encode("utf-16-le"), 2),  # read as UTF-16
    "utf16_odd_bytes.jsonl": (("\ufeff" + GOOD + "\n" + GOOD).encode("utf-16-le")[:-1], 2),
    "bom_then_bad.jsonl": (b"\xef\xbb\xbf{\"question\": \n", 1),
    "nul_bytes.jsonl": (GOOD.encode() + b"\n" + b'{"question": "a\x00b", "answer": "x"}\n', 2),
    "only_nuls.jsonl": (GOOD.encode() + b"\n\x00\x00\x00\x00\n", 2),
    "deep_array.jsonl": (GOOD.encode() + b"\n" + b"[" * DEEP + b"]" * DEEP + b"\n", 2),
    "deep_messages.jsonl": (b'{"messages": ' + b"[" * DEEP + b"]" * DEEP + b"}\n", 1),
    "deep_object.jsonl": (b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"\n", 1),
    "truncated_object.jsonl": (GOOD.encode() + b"\n" + GOOD[:20].encode(), 2),
    "trailing_garbage.jsonl": ((GOOD + " xyz\n").encode(), 1),
    "top_level_array.jsonl": (b"[1, 2, 3]\n", "1 (record 1)"),  # records sharing line 1: named by number too
    "null_record.jsonl": (GOOD.encode() + b"\nnull\n", 2),
    "number_record.jsonl": (b"42\n", 1),
    "string_record.jsonl": (b'"hello"\n', 1),
    "messages_null.jsonl": (b'{"messages": null}\n', 1),
    "messages_strings.jsonl": (b'{"messages": ["hi", "there"]}\n', 1),
    "content_parts.jsonl": (json.dumps({"messages": [{"role": "user", "content": [{"type": "text"}]},
                                                    {"role": "assistant", "content": "x"}]}).encode(), 1),
    "role_number.jsonl": (b'{"messages": [{"role": 1, "content": "x"}]}\n', 1),
    "infinite_number.jsonl": (b'{"question": 1e999999, "answer": "x"}\n', 1),
    "nan.jsonl": (b'{"question": NaN, "answer": "x"}\n', 1),
    "lone_surrogate.jsonl": (GOOD.encode() + b'\n{"question": "\\ud800", "answer": "x"}\n', 2),
    "crlf_bad.jsonl": ((GOOD + "\r\n" + GOOD + "\r\n{oops}\r\n").encode(), 3),
    "empty.jsonl": (b"", None),  # None: one error for the whole file, no line
    "whitespace.jsonl": (b"\n  \n\t\n", None),
    "truncated_array.json": (b'[\n{"question": "q", "answer": "a"},\n{"question": "q2", ', 3),
    "array_of_numbers.json": (b"[\n1,\n2\n]", 2),
    "deep.json": (b"[" * DEEP + b"]" * DEEP, 1),
    "bom_bad.json": (b"\xef\xbb\xbf[\n{\"question\": }\n]", 2),
    "utf16.json": (("\ufeff[" + GOOD + ",\n{]").encode("utf-16-le"), 2),
    "unknown_keys.json": (b'[{"foo": 1}]', 1),
    "open_bracket.json": (b"[", 1),
    "unclosed_quote.csv": (b'question,answer\nq1,a1\n"q2,a2\nq3,a3\n', 3),
    "quote_in_field.csv": (b'question,answer\nq1,a1\nq"2,"a"2"x\n', 3),
    "nul.csv": (b"question,answer\nq1,a1\nq\x002,a2\n", 3),
    "huge_field.csv": (b'question,answer\nq1,"' + b"a" * 200_000 + b'"\n', 2),
    "header_only.csv": (b"question,answer\n", None),
    "ragged.csv": (b"question,answer\nq1\n", 2),
    "bad_utf8.csv": (b"question,answer\nq1,a\xff1\n", 2),
    "wrong_types.parquet": (_parquet(lambda: {"question": ["q1", "q2"], "answer": [1, 2]}), 1),
    "list_column.parquet": (_parquet(lambda: {"question": [["q"], ["q"]], "answer": ["a", "b"]}), 1),
    "struct_column.parquet": (_parquet(_struct_column), 1),
    "truncated.parquet": (_truncated_parquet, 1),
    "not_parquet.parquet": (b"question,answer\nq,a\n", 1),
    "bad_utf8.txt": (b"some text \xc3\x28 more", 1),
    "empty.txt": (b"   \n", None),
    "empty_array.json": (b"[\n]\n", None),
    "text_after_array.json": (b'[\n' + GOOD.encode() + b'\n]\n' + GOOD.encode() + b'\n', 4),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    for name, (content, _) in CORPUS.items():
        if callable(content):
            content(d / name)
        else:
            (d / name).write_bytes(content)
    return d


@pytest.fixture
def check(run_cli, tiny_model, tokenizer, monkeypatch):
    """`chatforge check PATH` in-process, with the session's tokenizer (no reload per file)."""
    import chatforge.models.load as load

    monkeypatch.setattr(load, "load_tokenizer", lambda *a, **k: tokenizer)

    def _check(path):
        code, out, err = run_cli("check", path, "--model", tiny_model, "--no-estimate")
        assert "Traceback" not in out + err and "internal error" not in err, out + err
        return code, out + err

    return _check


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_malformed_file_exit_2_with_file_and_line(check, corpus, name):
    code, out = check(corpus / name)
    line = CORPUS[name][1]
    assert code == 2, out
    assert f"{corpus / name}:{line}:" in out if line else f"{corpus / name}: no examples in this file" in out, out


def test_directory_with_symlink_loop_and_dangling_link(check, tmp_path):
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "good.jsonl").write_text(GOOD + "\n")
    (d / "sub" / "bad.jsonl").write_text("{nope\n")
    (d / "sub" / "loop").symlink_to(d, target_is_directory=True)
    (d / "dangling.jsonl").symlink_to(tmp_path / "missing.jsonl")
    code, out = check(d)
    assert code == 2 and f"{d / 'sub' / 'bad.jsonl'}:1: invalid JSON" in out, out
    assert out.count("bad.jsonl:1") == 1  # read once, not once per trip round the loop


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory"])
def test_not_a_regular_file_is_refused_not_read(check, tmp_path, kind):
    path = tmp_path / "data.jsonl"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would block forever
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")  # reading it would never end
    else:
        path.mkdir()
        (path / "x.md").write_text("not data")
    code, out = check(path)
    assert code == 2 and str(path) in out, out


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(check, tmp_path):
    path = tmp_path / "secret.jsonl"
    path.write_text(GOOD + "\n")
    path.chmod(0)
    code, out = check(path)
    assert code == 2 and str(path) in out and "cannot read" in out


@pytest.mark.slow
def test_100_mb_single_line_is_refused_in_bounded_memory(tmp_path, tiny_model):
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as f:
        f.write(GOOD.encode() + b'\n{"question": "q", "answer": "')
        block = b"lorem ipsum " * 87_382  # ~1 MiB
        for _ in range(100):
            f.write(block)
        f.write(b'"}\n')
    # VmHWM: the child's own peak (getrusage's ru_maxrss carries the parent's peak over exec)
    code = ("import re, sys\nfrom chatforge.cli import main\nrc = main(sys.argv[1:])\n"
            "print('maxrss_kb', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
            "sys.exit(rc)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code, "check", str(path), "--model", str(tiny_model), "--no-estimate"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"{path}:2: record too large" in out.stdout and "Traceback" not in out.stderr
    rss_mb = int(out.stdout.split("maxrss_kb")[1]) / 1024
    assert rss_mb < 1200, f"peak RSS {rss_mb:.0f} MB for a 100 MB file"  # torch + transformers + tokenizer: ~500


# --- property test: format detection + validation never fail with anything but a named problem ---------------

def test_random_json_values_give_a_valid_example_or_a_named_problem():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from chatforge.data.formats import SIGNATURES, Invalid, detect_format, to_example
    from chatforge.data.validate import CLASSES, check_messages

    keys = st.sampled_from(sorted({k for ks in SIGNATURES.values() for k in ks} | {
        "role", "content", "from", "value", "weight", "system", "input", "history", "name", "x"}))
    roles = st.sampled_from(["user", "assistant", "system", "human", "gpt", "tool", "bot", ""])
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8) | roles
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(keys | st.text(max_size=4), inner, max_size=5), max_leaves=30)

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(values)
    def prop(value):
        fmt = detect_format(value)
        if fmt is None:
            return  # reported as unknown_format by analyse
        try:
            example = to_example(fmt, value)
            if isinstance(example, str):
                assert fmt == "text"
            else:
                check_messages(example)
                assert all(isinstance(m["content"], str) and m["role"] in ("system", "user", "assistant")
                           for m in example)
        except Invalid as e:
            assert e.cls in CLASSES and e.message

    prop()
