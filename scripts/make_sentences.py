"""Build the offline sentence set of the MiniLM accuracy runs (tests/fixtures/sentences.txt).

Source: the docstrings of Python's standard library (CPython 3.11, the modules listed below:
module, class and function docstrings, found by ``inspect``), which ship with every Python and
need no download. Each docstring is split into sentences; a sentence is kept when it is plain
English prose: 40..220 characters, starts with a capital letter, ends with a full stop, has no
code markers (``>>>``, ``::``, backquotes, braces, ``=``), and is mostly letters. Duplicates are
dropped, the rest shuffled with a fixed seed, and the first ``--count`` written one a line.

The file is committed (about 100 KB); this script is how it was made:

    python scripts/make_sentences.py --count 1000 --out tests/fixtures/sentences.txt

The first 800 lines are the evaluation set of scripts/minilm_accuracy.py, the last 200 its
calibration set (disjoint).
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import random
import re
import warnings

MODULES = (
    "abc argparse ast asyncio base64 bisect bz2 calendar cmd codecs collections colorsys "
    "concurrent.futures configparser contextlib copy csv dataclasses datetime decimal difflib "
    "dis email enum filecmp fileinput fnmatch fractions ftplib functools getopt gettext glob "
    "gzip hashlib heapq hmac html html.parser http.client http.server imaplib inspect io "
    "ipaddress itertools json logging lzma mailbox mimetypes numbers operator optparse os "
    "pathlib pickle pkgutil platform plistlib poplib pprint queue quopri random re sched "
    "secrets selectors shelve shlex shutil signal smtplib socket socketserver sqlite3 ssl stat "
    "statistics string struct subprocess tarfile tempfile textwrap threading timeit tokenize "
    "trace traceback turtle typing unittest urllib.parse urllib.request uuid wave weakref "
    "xml.dom.minidom xml.etree.ElementTree zipfile zipimport"
).split()
_SPLIT = re.compile(r"(?<=[.])\s+(?=[A-Z])")
_BAD = re.compile(r">>>|::|`|[{}=<>\[\]|\\_]|\bhttp|\.\.\.|e\.g\.|i\.e\.|etc\.")


def _docstrings() -> list:
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in MODULES:
            try:
                mod = importlib.import_module(name)
            except Exception:   # a module this Python lacks (e.g. no tkinter): skipped
                continue
            out.append(inspect.getdoc(mod) or "")
            for _, obj in sorted(vars(mod).items()):
                if inspect.isclass(obj) or inspect.isfunction(obj):
                    if getattr(obj, "__module__", None) != mod.__name__:
                        continue
                    out.append(inspect.getdoc(obj) or "")
                    if inspect.isclass(obj):
                        for _, m in sorted(vars(obj).items()):
                            if inspect.isfunction(m):
                                out.append(inspect.getdoc(m) or "")
    return out


def sentences() -> list:
    seen, keep = set(), []
    for doc in _docstrings():
        for para in doc.split("\n\n"):
            text = " ".join(para.split())
            for s in _SPLIT.split(text):
                s = s.strip()
                if not (40 <= len(s) <= 220 and s[0].isupper() and s.endswith(".")):
                    continue
                if _BAD.search(s) or sum(c.isalpha() or c == " " for c in s) < 0.9 * len(s):
                    continue
                if s.lower() not in seen:
                    seen.add(s.lower())
                    keep.append(s)
    return keep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--out", default="tests/fixtures/sentences.txt")
    a = ap.parse_args()
    s = sentences()
    random.Random(a.seed).shuffle(s)
    if len(s) < a.count:
        raise SystemExit(f"only {len(s)} sentences found, {a.count} asked")
    with open(a.out, "w", encoding="utf-8") as f:
        f.write("\n".join(s[:a.count]) + "\n")
    print(f"{len(s)} sentences found, {a.count} written to {a.out}")


if __name__ == "__main__":
    main()
