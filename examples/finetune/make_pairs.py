"""Builds pairs.jsonl: the labelled pairs of the fine-tuning example and test.

A real corpus, titles against bodies: CPython 3.11 standard-library docstrings of modules,
their public functions and classes, and the classes' methods (a stable source on every
machine with Python 3.11), each split into its summary line (the query) and the rest (the
positive). Pairs of the retrieval fixture
(tests/fixtures/retrieval) are left out, so the fine-tuned model is never evaluated there on
its own training data. Every fifth pair also names a hard negative: the body of another
docstring of the same module. Run once; the output is committed.

    python examples/finetune/make_pairs.py
"""

import json
import warnings
import pathlib
import random
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "embeddings"))
from make_texts import MODULES as FIXTURE_MODULES  # noqa: E402

import importlib  # noqa: E402
import inspect  # noqa: E402

MODULES = FIXTURE_MODULES + [
    "os", "os.path", "io", "sys", "time", "math", "cmath", "struct", "array", "weakref", "types",
    "operator", "numbers", "codecs", "unicodedata", "locale", "gettext", "getopt", "optparse",
    "configparser", "netrc", "plistlib", "mailbox", "mimetypes", "base64", "binascii", "quopri",
    "uu", "zlib", "bz2", "lzma", "shelve", "dbm", "marshal", "copyreg", "filecmp", "fileinput",
    "stat", "linecache", "tokenize", "keyword", "symtable", "py_compile", "compileall", "pkgutil",
    "importlib", "zipimport", "runpy", "warnings", "traceback", "faulthandler", "pdb", "profile",
    "pstats", "cProfile", "tracemalloc", "gc", "atexit", "signal", "selectors", "select",
    "socketserver", "http.server", "http.cookies", "http.cookiejar", "urllib.request",
    "urllib.error", "urllib.robotparser", "ftplib", "poplib", "imaplib", "smtplib", "uuid",
    "ipaddress", "xmlrpc.client", "xml.etree.ElementTree", "xml.sax", "html.parser", "webbrowser",
    "wsgiref.util", "concurrent.futures", "multiprocessing", "contextvars", "asyncio.streams",
    "email.utils", "email.parser", "email.policy", "json.decoder", "json.encoder", "graphlib",
    "reprlib", "string", "colorsys", "wave", "chunk", "imghdr", "sndhdr", "turtle", "cmd", "shlex",
    "tkinter", "curses", "platform", "errno", "ctypes", "sysconfig", "site", "venv", "zipapp",
    "modulefinder", "ensurepip", "lib2to3", "pydoc", "unittest.mock", "test.support",
]


def members(mod):
    """Public functions and classes of a module, and the methods of its classes."""
    for a in sorted(dir(mod)):
        if a.startswith("_"):
            continue
        obj = getattr(mod, a, None)
        yield obj
        if inspect.isclass(obj) and getattr(obj, "__module__", "").startswith(mod.__name__):
            for m in sorted(vars(obj)):
                if not m.startswith("_"):
                    yield getattr(obj, m, None)


def docstrings_by_module():
    seen = set()
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except Exception:  # an optional module absent on this build (tkinter, curses)
            continue
        for obj in [mod, *members(mod)]:
            try:
                doc = inspect.getdoc(obj)
            except Exception:
                continue
            if not doc or doc in seen or len(doc) < 20:
                continue
            seen.add(doc)
            yield name, doc


def main():
    warnings.simplefilter("ignore")  # deprecated modules (imghdr, uu, ...) still document
    fixture = {json.loads(l)["query"] for l in open(ROOT / "tests/fixtures/retrieval/queries.jsonl")}
    rng = random.Random(20261124)
    pairs, bodies = [], {}
    for module, doc in docstrings_by_module():
        summary, _, body = doc.partition("\n")
        summary, body = summary.strip(), body.strip()
        if len(summary.split()) < 4 or len(body) < 80 or summary in body or summary in fixture:
            continue
        pairs.append((module, summary, body[:1500]))
        bodies.setdefault(module, []).append(body[:1500])
    seen_queries = set()
    out = ROOT / "examples/finetune/pairs.jsonl"
    n = 0
    with open(out, "w") as f:
        for module, summary, body in pairs:
            if summary in seen_queries:
                continue
            seen_queries.add(summary)
            row = {"query": summary, "positive": body}
            others = [b for b in bodies[module] if b != body]
            if n % 5 == 0 and others:
                row["negatives"] = [rng.choice(others)]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    print(f"{n} pairs -> {out}")


if __name__ == "__main__":
    main()
