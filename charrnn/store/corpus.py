"""A corpus from many files: which files, their documents, and the train / validation split.

data.path is a file, '-' (stdin), a folder (every file under it, recursively, in sorted order,
names starting with '.' left out), a glob (`lyrics/**/*.txt`), or a list of these. Files found
in a folder or by a glob that are binary (a NUL byte in their first BINARY_SNIFF bytes, as git
decides, and no UTF-16/32 pattern) are skipped and counted; a file that is not UTF-8 stops the
run with the file and byte offset named, or with data.skip_invalid is skipped with a warning.

data.documents (docs/documents.md):
  none    the files' texts joined into one stream (a newline added after a file that lacks one)
  lines   every non-empty line is a document (the line ending is not part of it)
  blank   documents are separated by one or more empty lines
With documents, the ids are EOD d_1 EOD d_2 EOD ... d_n EOD: every document is preceded and
followed by the end-of-document symbol EOD that the vocabulary reserves, so each one is read
from EOD (its start symbol) and its last target is EOD. A file always ends a document.

The validation split (`split_at`): the last whole files when they make between half and twice
data.val_fraction of the text, else the last val_fraction of the text, moved to the nearest
document start in documents mode so that no document is cut. Corpus.notes says which.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field

import numpy as np

from charrnn.store import encoding
from charrnn.store.text import DataError, decode_text, display_name, read_bytes
from charrnn.store.vocab import EOD, Vocab

BINARY_SNIFF = 8000       # git's heuristic: a NUL byte in the first 8000 bytes means binary
_GLOB = re.compile(r"[*?[]")
_BLANK = re.compile(r"\n[ \t\r]*\n")


@dataclass
class Corpus:
    """The corpus of a run: its vocabulary, its ids and where validation starts.

    train ids = ids[:split + 1] in documents mode (the EOD ending the last training document is
    its last target), ids[:split] otherwise; validation ids = ids[split:] (starting with EOD in
    documents mode). train_docs / val_docs: the documents (or the two texts) as strings.
    """

    vocab: Vocab
    ids: np.ndarray
    split: int
    documents: bool
    train_docs: list = field(default_factory=list)
    val_docs: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def train_ids(self) -> np.ndarray:
        return self.ids[:self.split + 1] if self.documents else self.ids[:self.split]

    @property
    def val_ids(self) -> np.ndarray:
        return self.ids[self.split:]


# -- finding the files --------------------------------------------------------------------------

def paths_of(spec) -> list[tuple[str, bool]]:
    """(path, found) for every file data.path names, in order; found: it came from a folder or a
    glob (so a binary one is skipped) rather than being named. DataError for a missing path or a
    glob that matches no file."""
    out = []
    for entry in [spec] if isinstance(spec, str) else list(spec):
        if entry == "-":
            out.append(("-", False))
        elif _GLOB.search(entry):
            matches = sorted(glob.glob(entry, recursive=True))
            files = [(p, True) for m in matches for p in _walk(m)]
            if not files:
                raise DataError(f"the pattern {entry} matches no file; check data.path")
            out += files
        elif os.path.isdir(entry):
            files = [(p, True) for p in _walk(entry)]
            if not files:
                raise DataError(f"the folder {entry} holds no file; check data.path")
            out += files
        elif os.path.exists(entry):
            out.append((entry, False))
        else:
            raise DataError(f"{entry} does not exist; check data.path (a file, a folder, a glob, "
                            f"or '-' for stdin)")
    return out


def _walk(path: str) -> list[str]:
    """A file itself, or every file under a folder in sorted order (hidden names left out)."""
    if not os.path.isdir(path):
        return [path] if os.path.isfile(path) else []
    found = []
    for root, dirs, files in os.walk(path):
        if _is_run_folder(root) and root != path:
            dirs[:] = []                   # a charrnn run's own files are not corpus text
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in files if not f.startswith(".")]
    return sorted(found)


def _is_run_folder(path: str) -> bool:
    """Whether path holds a charrnn run (its metrics.jsonl, or a checkpoint of a run)."""
    return any(os.path.isfile(os.path.join(path, name))
               for name in ("metrics.jsonl", "last.safetensors", "best.safetensors"))


def is_binary(raw: bytes) -> bool:
    """A NUL byte early on, and not the NUL pattern of UTF-16/32 text (that gets its own error)."""
    head = raw[:BINARY_SNIFF]
    return b"\x00" in head and encoding.sniff_wide(raw) is None and not any(
        raw.startswith(mark) for mark, _, _ in encoding.BOMS)


def read_files(spec, skip_invalid: bool = False, warn=None) -> tuple[list[tuple[str, str]], list[str]]:
    """([(path, text)] of the files of data.path, notes on what was skipped)."""
    texts, binary, invalid = [], 0, 0
    for path, found in paths_of(spec):
        raw = read_bytes(path)
        if found and is_binary(raw):
            binary += 1
            continue
        try:
            texts.append((path, decode_text(raw, path, warn)))
        except DataError as e:
            if not skip_invalid:
                raise DataError(f"{e}; or set data.skip_invalid: true to skip such files") from None
            invalid += 1
            (warn or _stderr)(f"skipped {display_name(path)}: {e}")
    notes = []
    if binary:
        notes.append(f"skipped {binary} binary file{'s' if binary > 1 else ''}")
    if invalid:
        notes.append(f"skipped {invalid} file{'s that are' if invalid > 1 else ' that is'} not UTF-8")
    if not texts:
        raise DataError(f"data.path ({spec}) has no text file to read")
    return texts, notes


def _stderr(message: str) -> None:
    import sys
    print(f"charrnn: warning: {message}", file=sys.stderr)


# -- documents ----------------------------------------------------------------------------------

def split_documents(text: str, mode: str) -> list[str]:
    """The documents of one file's text: mode 'lines' or 'blank' (module docstring)."""
    if mode == "lines":
        parts = (line.removesuffix("\r") for line in text.split("\n"))
    elif mode == "blank":
        parts = (part.strip("\r\n") for part in _BLANK.split(text))
    else:
        raise ValueError(f"documents must be 'lines' or 'blank'; got {mode!r}")
    return [p for p in parts if p.strip()]


def join_documents(docs: list[str]) -> str:
    """EOD d_1 EOD d_2 ... d_n EOD: the text whose ids training and evaluation read."""
    return EOD + EOD.join(docs) + EOD


# -- the split ----------------------------------------------------------------------------------

def split_at(sizes: list[int], starts: list[int], n: int, val_fraction: float) -> tuple[int, str]:
    """(index where validation starts, what was held out) for a text of n characters whose file
    j starts at sum(sizes[:j]); `starts`: the allowed places (document starts), or [] for any."""
    want = val_fraction * n
    best, held = None, 0
    for k in range(1, len(sizes)):                   # the last k files, at least one kept
        held += sizes[-k]
        if best is None or abs(held - want) < abs(best[1] - want):
            best = (k, held)
    if best is not None and want / 2 <= best[1] <= 2 * want:
        k, held = best
        return sum(sizes) - held, f"the last {k} of {len(sizes)} files ({held / n:.1%} of the text)"
    at = int(n * (1.0 - val_fraction))
    why = (f" ({len(sizes)} files are too few to hold whole ones out)" if len(sizes) > 1 else "")
    if starts:
        if len(starts) < 2:
            raise DataError("documents mode needs at least 2 documents (one for validation); "
                            "give more text or check data.documents")
        inner = np.asarray(starts[1:])               # keep one document for training
        at = int(inner[np.argmin(np.abs(inner - at))])
        return at, f"the last {len(starts) - starts.index(at)} documents{why}"
    return at, f"the last {val_fraction:.0%} of the text{why}"


# -- all together -------------------------------------------------------------------------------

def read_corpus(data_cfg, vocab: Vocab | None = None, warn=None) -> Corpus:
    """The corpus of a config's data section, with `vocab` (a checkpoint's) or a new one.

    DataError for no text, a character the given vocabulary lacks, or EOD in the text of a
    documents-mode corpus.
    """
    files, notes = read_files(data_cfg.path, data_cfg.skip_invalid, warn)
    docs_mode = data_cfg.documents != "none"
    if docs_mode:
        per_file = [split_documents(text, data_cfg.documents) for _, text in files]
        for (path, text), _ in zip(files, per_file):
            if EOD in text:
                raise DataError(f"{display_name(path)} holds the character U+0003, which documents "
                                f"mode reserves as its end-of-document symbol; remove it")
        docs = [d for file_docs in per_file for d in file_docs]
        text = join_documents(docs)
        if not docs:
            raise DataError(f"the corpus {display_name(str(data_cfg.path))} has no documents; "
                            f"give data.path some UTF-8 text")
        sizes = [sum(len(d) + 1 for d in file_docs) for file_docs in per_file]  # EOD + document
        starts = np.cumsum([0] + [len(d) + 1 for d in docs[:-1]]).tolist()
        notes.insert(0, f"{len(docs):,} documents ({data_cfg.documents})")
    else:
        texts = [t if t.endswith("\n") or i == len(files) - 1 else t + "\n"
                 for i, (_, t) in enumerate(files)]
        text, sizes, starts, docs = "".join(texts), [len(t) for t in texts], [], []
    if not text:
        raise DataError(f"the corpus {display_name(str(data_cfg.path))} is empty; give data.path "
                        f"some UTF-8 text")
    split, held = split_at(sizes, starts, len(text), data_cfg.val_fraction)
    if len(files) > 1:
        notes.insert(0, f"{len(files)} files")
    if len(files) > 1 or docs_mode:          # one plain file: the documented last fraction
        notes.append(f"validation: {held}")
    vocab = _vocab_for(text, vocab, docs_mode, data_cfg.path)
    ids = vocab.encode(text)
    if docs_mode:
        n_train = starts.index(split)
        train_docs, val_docs = docs[:n_train], docs[n_train:]
    else:
        train_docs, val_docs = [text[:split]], [text[split:]]
    return Corpus(vocab, ids, split, docs_mode, train_docs, val_docs, notes)


def _vocab_for(text: str, vocab: Vocab | None, docs_mode: bool, path) -> Vocab:
    if vocab is None:
        return Vocab.from_text(text, eod=EOD if docs_mode else None)
    if docs_mode and vocab.eod is None:
        raise DataError("data.documents is on but the checkpoint's vocabulary has no "
                        "end-of-document symbol; train a new model for documents")
    missing = sorted(set(text) - set(vocab.symbols))
    if missing:
        shown = "".join(missing[:20])
        raise DataError(f"{path} has {len(missing)} characters that the checkpoint's vocabulary "
                        f"lacks ({shown!r}); train a new model on this text instead.")
    return vocab


# -- novelty of samples -------------------------------------------------------------------------

def novelty_marker(data_cfg, vocab: Vocab | None = None):
    """mark(sample) -> 'train', 'val' or 'new': whether the sample is one of the training split's
    documents, one of validation's, or neither (as makemore reports). Without documents, whether
    it occurs in the training text, in the validation text, or in neither. Reads data.path
    again (DataError when it is gone)."""
    corpus = read_corpus(data_cfg, vocab, warn=lambda message: None)
    if corpus.documents:
        train, val = set(corpus.train_docs), set(corpus.val_docs)
        return lambda s: "train" if s in train else "val" if s in val else "new"
    train_text, val_text = corpus.train_docs[0], corpus.val_docs[0]
    return lambda s: "train" if s in train_text else "val" if s in val_text else "new"
