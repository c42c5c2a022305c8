"""Corpora from many files: folders, globs, lists, binary files, invalid UTF-8, the split."""

import types

import pytest
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.config import DataConfig
from charrnn.store.corpus import read_corpus, read_files, split_at, split_documents
from charrnn.store.text import DataError
from charrnn.store.vocab import EOD


def tree(root, files: dict):
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def names(texts, root):
    return [p.removeprefix(str(root) + "/") for p, _ in texts]


def test_a_folder_is_read_recursively_in_sorted_order_without_hidden_files(tmp_path):
    tree(tmp_path / "d", {"b.txt": "B\n", "a/z.txt": "Z\n", "a/c.md": "C\n", ".git/x": "no",
                          "sub/.hidden.txt": "no", "a.txt": "A\n"})
    texts, notes = read_files(str(tmp_path / "d"))
    assert names(texts, tmp_path / "d") == ["a.txt", "a/c.md", "a/z.txt", "b.txt"]
    assert [t for _, t in texts] == ["A\n", "C\n", "Z\n", "B\n"] and notes == []


def test_a_glob_and_a_list_of_paths(tmp_path):
    tree(tmp_path, {"x/1.txt": "one", "x/2.txt": "two", "x/3.md": "three", "y.txt": "why"})
    texts, _ = read_files(str(tmp_path / "x" / "*.txt"))
    assert [t for _, t in texts] == ["one", "two"]
    texts, notes = read_files([str(tmp_path / "y.txt"), str(tmp_path / "x" / "*.md"), str(tmp_path / "x")])
    assert [t for _, t in texts] == ["why", "three", "one", "two"]        # 3.md read once
    assert notes == ["skipped 1 path to a file already read (3.md -> 3.md)"]
    with pytest.raises(DataError, match="matches no file"):
        read_files(str(tmp_path / "*.csv"))


def test_binary_files_in_a_folder_are_skipped_and_counted(tmp_path):
    tree(tmp_path, {"a.txt": "text\n", "img.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
                    "b.bin": bytes(range(256))})
    texts, notes = read_files(str(tmp_path))
    assert [t for _, t in texts] == ["text\n"] and notes == ["skipped 2 binary files"]


def test_invalid_utf8_names_the_file_and_offset_or_is_skipped(tmp_path):
    tree(tmp_path, {"a.txt": "fine\n", "b.txt": b"caf\xe9\n", "c.txt": "also fine\n"})
    with pytest.raises(DataError) as e:
        read_files(str(tmp_path))
    assert str(e.value).startswith(f"{tmp_path / 'b.txt'} is not valid UTF-8: invalid byte 0xe9 "
                                   f"at byte offset 3")
    assert "--set data.skip_invalid=true" in str(e.value)
    heard = []
    texts, notes = read_files(str(tmp_path), skip_invalid=True, warn=heard.append)
    assert [t for _, t in texts] == ["fine\n", "also fine\n"]
    assert notes == ["skipped 1 file that is not UTF-8"]
    assert len(heard) == 1 and heard[0].startswith(f"skipped {tmp_path / 'b.txt'}: ")


def test_documents_lines_and_blank():
    assert split_documents("Anna\r\nBob\n\n  \nCy", "lines") == ["Anna", "Bob", "Cy"]
    assert split_documents("a b\nc\n\n\nd\n \ne\n", "blank") == ["a b\nc", "d", "e"]


def cfg(path, **kw):
    return types.SimpleNamespace(**{**vars(DataConfig(path=str(path))), **kw})


def test_validation_holds_out_whole_files_when_there_are_enough(tmp_path):
    for i in range(10):
        (tmp_path / f"{i}.txt").write_text(f"file {i} " * 10 + "\n")
    c = read_corpus(cfg(tmp_path))
    assert c.vocab.decode(c.val_ids) == (tmp_path / "9.txt").read_text()
    assert "validation: the last 1 of 10 files (10.0% of the text)" in c.notes


def test_too_few_files_fall_back_to_the_last_fraction_and_say_so(tmp_path):
    (tmp_path / "a.txt").write_text("x" * 50 + "\n")
    (tmp_path / "b.txt").write_text("y" * 49)
    c = read_corpus(cfg(tmp_path))
    assert len(c.val_ids) == 10 and c.vocab.decode(c.val_ids) == "y" * 10
    assert c.notes[-1] == "validation: the last 10% of the text (2 files are too few to hold whole ones out)"
    assert c.vocab.decode(c.train_ids).startswith("x" * 50 + "\ny")     # a newline between files


def test_documents_split_at_a_document_start_and_a_file_ends_a_document(tmp_path):
    (tmp_path / "a.txt").write_text("ann\nbo\ncyd")
    (tmp_path / "b.txt").write_text("dee\neve\n")
    c = read_corpus(cfg(tmp_path, documents="lines", val_fraction=0.3))
    text = c.vocab.decode(c.ids)
    assert text == EOD + EOD.join(["ann", "bo", "cyd", "dee", "eve"]) + EOD
    assert c.vocab.eod == EOD and c.vocab.decode(c.val_ids)[0] == EOD
    assert c.train_docs + c.val_docs == ["ann", "bo", "cyd", "dee", "eve"] and c.val_docs
    assert c.vocab.decode(c.train_ids) == EOD + EOD.join(c.train_docs) + EOD


def test_split_at_is_the_nearest_document_start():
    assert split_at([100], [0, 30, 60, 85], 100, 0.1) == (85, "the last 1 documents")
    assert split_at([100], [], 100, 0.25) == (75, "the last 25% of the text")


def test_train_on_a_folder_reports_files_skips_and_split(tmp_path):
    data = tree(tmp_path / "songs", {f"s{i}.txt": "la la la, sing along\n" * 6 for i in range(10)})
    (data / "cover.jpg").write_bytes(b"\xff\xd8\xff\x00\x10JFIF\x00")
    r = CliRunner().invoke(cli, ["train", "--data", str(data), "--set", "train.max_steps=1",
                                 "--set", "model.hidden_size=8", "--set", "train.batch_size=4",
                                 "--set", "train.seq_len=8", "--set",
                                 f"train.out_dir={tmp_path / 'run'}", "--set", "train.threads=1"])
    assert r.exit_code == 0, r.output
    assert ("charrnn: 10 files; skipped 1 binary file; validation: the last 1 of 10 files "
            "(10.0% of the text)") in r.output
