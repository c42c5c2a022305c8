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

import collections
import dataclasses
import glob
import os
import re
import stat
from dataclasses import dataclass, field

import numpy as np

from charrnn.store import encoding, source
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
    chars: int = 0           # the text's own characters (documents: without the EOD symbols)
    distinct: int = 0        # and how many distinct ones, whatever vocabulary encodes them

    @property
    def train_ids(self) -> np.ndarray:
        return self.ids[:self.split + 1] if self.documents else self.ids[:self.split]

    @property
    def val_ids(self) -> np.ndarray:
        return self.ids[self.split:]


# -- finding the files --------------------------------------------------------------------------

@dataclass
class Skipped:
    """What finding the files left out: files found in a folder or by a glob that are not
    regular files (FIFOs, devices, sockets: reading one could hang or never end), links that
    lead nowhere, and files reached a second time (by a link, or by two entries)."""

    special: int = 0
    broken: int = 0
    repeats: list = field(default_factory=list)     # (path, the path it was first read as)

    def notes(self) -> list[str]:
        out = []
        if self.special == 1:
            out.append("skipped 1 file that is not a regular file (a pipe, device or socket)")
        elif self.special:
            out.append(f"skipped {self.special} files that are not regular files (pipes, "
                       f"devices, sockets)")
        if self.broken:
            out.append(f"skipped {_count(self.broken, 'broken link')}")
        if self.repeats:
            shown = ", ".join(f"{os.path.basename(p)} -> {os.path.basename(q)}"
                              for p, q in self.repeats[:3])
            more = ", ..." if len(self.repeats) > 3 else ""
            out.append(f"skipped {_count(len(self.repeats), 'path')} to a file already read "
                       f"({shown}{more})")
        return out


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def paths_of(spec, skipped: Skipped | None = None) -> list[tuple[str, bool]]:
    """(path, found) for every regular file data.path names, in order, each file once; found:
    it came from a folder or a glob (so a binary one is skipped) rather than being named.
    `skipped` counts what was left out. DataError for a missing path, a named path that is not
    a regular file, or a glob or folder that holds no file."""
    skipped = skipped if skipped is not None else Skipped()
    out, seen = [], {}                    # seen: (device, inode) -> index in out
    for entry in [spec] if isinstance(spec, str) else list(spec):
        if entry == "-":
            seen[("-", len(out))] = len(out)      # standard input is no file to read twice
            out.append(("-", False, ("-", len(out))))
            continue
        if _GLOB.search(entry):
            candidates = [(p, True) for m in sorted(glob.glob(entry, recursive=True))
                          for p in _walk(m)]
            if not candidates:
                raise DataError(f"the pattern {entry} matches no file; check data.path")
        elif os.path.isdir(entry):
            candidates = [(p, True) for p in _walk(entry)]
            if not candidates:
                raise DataError(f"the folder {entry} holds no file; check data.path")
        elif os.path.lexists(entry):
            candidates = [(entry, False)]
        else:
            raise DataError(f"{entry} does not exist; check data.path (a file, a folder, a glob, "
                            f"or '-' for stdin)")
        for path, found in candidates:
            key = _regular_file(path, found, skipped)
            if key is not None:
                at = seen.get(key)
                if at is None or (os.path.islink(out[at][0]) and not os.path.islink(path)):
                    seen[key] = len(out)          # read at its own name rather than a link's
                out.append((path, found, key))
    kept = set(seen.values())
    skipped.repeats += [(path, out[seen[key]][0]) for i, (path, _, key) in enumerate(out)
                        if i not in kept]
    return [(path, found) for i, (path, found, _) in enumerate(out) if i in kept]


def _regular_file(path: str, found: bool, skipped: Skipped):
    """The (device, inode) of a regular file, following links; None for what a folder or glob
    may skip (counted in `skipped`); DataError for a named path that cannot be read as one."""
    try:
        st = os.stat(path)
    except OSError as e:                 # a link to nothing, a loop of links, no permission
        if found and os.path.islink(path):
            skipped.broken += 1
            return None
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    if stat.S_ISREG(st.st_mode):
        return st.st_dev, st.st_ino
    if found:
        skipped.special += 1
        return None
    raise DataError(f"{path} is {_kind(st.st_mode)}, not a regular file; give a text file (to "
                    f"read from a pipe, give --data - and pipe the text in)")


def _walk(path: str) -> list[str]:
    """A path itself, or every entry under a folder that is not a folder, in sorted order
    (hidden names left out); paths_of keeps the regular files among them."""
    if not os.path.isdir(path):
        return [path]
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
    texts, binary, invalid, skipped = [], 0, 0, Skipped()
    for path, found in paths_of(spec, skipped):
        raw = read_bytes(path)
        if found and is_binary(raw):
            binary += 1
            continue
        try:
            texts.append((path, decode_text(raw, path, warn, in_place=found)))
        except DataError as e:
            if not skip_invalid:
                raise DataError(f"{e}; or add --set data.skip_invalid=true to skip such "
                                f"files") from None
            invalid += 1
            (warn or _stderr)(f"skipped {display_name(path)}: {e}")
    notes = []
    if binary:
        notes.append(f"skipped {binary} binary file{'s' if binary > 1 else ''}")
    if invalid:
        notes.append(f"skipped {invalid} file{'s that are' if invalid > 1 else ' that is'} not UTF-8")
    notes += skipped.notes()
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


def _dropped_lines(files, mode: str) -> str:
    """', N empty lines dropped' in lines mode (blank lines are not documents), else ''."""
    if mode != "lines":
        return ""
    empty = sum(sum(1 for line in text.removesuffix("\n").split("\n") if not line.strip())
                for _, text in files if text)
    return f", {empty:,} empty line{'s' if empty != 1 else ''} dropped" if empty else ""


def _copies(train_docs: list[str], val_docs: list[str]) -> str | None:
    """A warning when validation documents are copies of training ones: the validation loss
    then measures memory, and --novelty calls such samples 'train'."""
    known = set(train_docs)
    copies = sum(1 for d in val_docs if d in known)
    if not copies:
        return None
    return (f"{copies:,} of the {len(val_docs):,} validation documents are copies of training "
            f"documents, so the validation loss flatters the model; remove the duplicates "
            f"(e.g. awk '!seen[$0]++' FILE) for a fair one")


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
        notes.insert(0, f"{len(docs):,} documents ({data_cfg.documents})"
                     + _dropped_lines(files, data_cfg.documents))
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
        copies = _copies(train_docs, val_docs)
        if copies:
            (warn or _stderr)(copies)
    else:
        train_docs, val_docs = [text[:split]], [text[split:]]
    own = collections.Counter(text)
    if docs_mode:
        del own[EOD]                      # the symbol charrnn adds, not the text's
    return Corpus(vocab, ids, split, docs_mode, train_docs, val_docs, notes,
                  chars=sum(own.values()), distinct=len(own))


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

def novelty_marker(data_cfg, vocab: Vocab | None = None, saved: dict | None = None,
                   run_dir: str = os.curdir, fix: str = "--data NEW_PATH"):
    """mark(sample) -> 'train', 'val' or 'new': whether the sample is one of the training split's
    documents, one of validation's, or neither (as makemore reports). Without documents, whether
    it occurs in the training text, in the validation text, or in neither. Reads data.path
    again, found from the run folder run_dir by the run's record `saved` (charrnn/store/
    source.py), and checks by its fingerprint that it is the text the run trained on, as
    --resume does. DataError, naming `fix` (the command that gives another place), when the
    text is gone or has changed."""
    place = source.locate(data_cfg.path, saved, run_dir, fix)
    corpus = read_corpus(dataclasses.replace(data_cfg, path=place), vocab,
                         warn=lambda message: None)
    how = source.changed(saved, source.fingerprint(corpus.train_ids, corpus.val_ids))
    if how is not None:
        raise DataError(f"the run's text {data_cfg.path} is not the one it was trained on "
                        f"({how}), so the marks would be wrong; restore it, or give where that "
                        f"text is now: {fix}")
    if corpus.documents:
        train, val = set(corpus.train_docs), set(corpus.val_docs)
        return lambda s: "train" if s in train else "val" if s in val else "new"
    train_text, val_text = corpus.train_docs[0], corpus.val_docs[0]
    return lambda s: "train" if s in train_text else "val" if s in val_text else "new"
