#!/usr/bin/env python3
"""Generates the Java FFM bindings of native/include/flatquant.h in jextract's shape (jextract 22).

    python3 bindings/generate_bindings.py           # rewrite bindings/src/main/java/org/flatquant/bindings/
    python3 bindings/generate_bindings.py --check   # regenerate into a temp dir, fail with a diff when they differ

jextract is the reference tool for this job, but it ships only as a binary outside the package registries, so this
script reproduces the part of its output the project uses, from the same source of truth: libclang's view of the
header. Struct offsets, sizes and padding are read from libclang, never computed here, so the layouts agree with the
C compiler by construction. bindings/jextract.sh is the equivalent jextract command line.

libclang comes from the PyPI package `libclang` (pinned below; its wheel carries libclang.so). Unless --system-clang
is given, the script creates a virtual environment under build/bindings-venv on first use and re-runs itself there,
so every machine generates with the same clang.
"""
import argparse
import difflib
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from emit_java import (HEADER_CLASS, HEADER_REL, REGENERATE, emit_fnptr, emit_header_class,  # noqa: E402
                       emit_stamp, emit_struct)

LIBCLANG_REQUIREMENT = "libclang==18.1.1"
REPO = Path(__file__).resolve().parent.parent
HEADER = REPO / "native" / "include" / "flatquant.h"
OUT_DIR = REPO / "bindings" / "src" / "main" / "java" / "org" / "flatquant" / "bindings"
VENV = REPO / "build" / "bindings-venv"


def ensure_clang(args):
    """Imports clang.cindex, re-running the script inside the pinned venv unless told to use the system's."""
    in_venv = Path(sys.prefix).resolve() == VENV.resolve()
    if not args.system_clang and not in_venv:
        py = VENV / "bin" / "python"
        if not py.exists():
            print(f"creating {VENV.relative_to(REPO)} with {LIBCLANG_REQUIREMENT}", file=sys.stderr)
            subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
            subprocess.check_call([str(py), "-m", "pip", "install", "-q", LIBCLANG_REQUIREMENT])
        os.execv(str(py), [str(py), str(Path(__file__).resolve())] + sys.argv[1:])
    try:
        import clang.cindex as ci
    except ImportError:
        sys.exit(f"error: clang.cindex not importable; pip install {LIBCLANG_REQUIREMENT} or drop --system-clang")
    return ci


# ---------------------------------------------------------------------------------------------------------------
# C types -> (layout expression, Java carrier, ValueLayout class)
# ---------------------------------------------------------------------------------------------------------------
class Mapper:
    def __init__(self, ci):
        self.ci = ci
        k = ci.TypeKind
        # Fixed-width typedefs resolve to int/long/long long depending on the platform; the layout is chosen by
        # size so the committed bindings hold on every 64-bit platform (int64_t is `long` on Linux, `long long`
        # on Windows, 8 bytes on both).
        self.integer_kinds = {k.CHAR_S, k.SCHAR, k.UCHAR, k.CHAR_U, k.SHORT, k.USHORT, k.INT, k.UINT, k.LONG,
                              k.ULONG, k.LONGLONG, k.ULONGLONG}

    def scalar(self, t):
        """Layout of a non-array, non-record type: (C_* name, Java type, layout class)."""
        k = self.ci.TypeKind
        c = t.get_canonical()
        if c.kind == k.POINTER:
            return "C_POINTER", "MemorySegment", "AddressLayout"
        if c.kind == k.BOOL:
            return "C_BOOL", "boolean", "OfBoolean"
        if c.kind == k.FLOAT:
            return "C_FLOAT", "float", "OfFloat"
        if c.kind == k.DOUBLE:
            return "C_DOUBLE", "double", "OfDouble"
        if c.kind in self.integer_kinds:
            size = c.get_size()
            return {1: ("C_CHAR", "byte", "OfByte"), 2: ("C_SHORT", "short", "OfShort"),
                    4: ("C_INT", "int", "OfInt"), 8: ("C_LONG_LONG", "long", "OfLong")}[size]
        raise SystemExit(f"error: unsupported type {t.spelling!r} (kind {c.kind}); the ABI allows fixed-width "
                         "scalars, pointers and arrays of them")


# ---------------------------------------------------------------------------------------------------------------
# Reading the header
# ---------------------------------------------------------------------------------------------------------------
def eval_macro(tokens):
    """Value of an object-like macro made of integer literals, parentheses and unary minus; None otherwise."""
    body = tokens[1:]
    if not body or not all(t in "()-" or t.isdigit() for t in body):
        return None
    return int(eval("".join(body), {"__builtins__": {}}))  # only digits, parens and minus reach here


def read_header(ci, header):
    index = ci.Index.create()
    tu = index.parse(str(header), args=["-x", "c", "-std=c11"],
                     options=ci.TranslationUnit.PARSE_DETAILED_PROCESSING_RECORD)
    errors = [d for d in tu.diagnostics if d.severity >= ci.Diagnostic.Error]
    if errors:
        raise SystemExit("error: libclang could not parse the header:\n" + "\n".join(str(d) for d in errors))
    decls = []  # (kind, cursor or payload) in header order
    seen_structs = set()
    for c in tu.cursor.get_children():
        if c.location.file is None or Path(c.location.file.name).resolve() != header.resolve():
            continue
        K = ci.CursorKind
        if c.kind == K.MACRO_DEFINITION:
            if c.spelling.startswith("FQ_") and not c.spelling == "FQ_API":
                value = eval_macro([t.spelling for t in c.get_tokens()])
                if value is not None:
                    decls.append(("macro", (c.spelling, value, macro_text(c))))
        elif c.kind == K.FUNCTION_DECL:
            if c.type.is_function_variadic():
                raise SystemExit(f"error: {c.spelling} is variadic; the ABI has no variadic functions")
            decls.append(("function", c))
        elif c.kind == K.STRUCT_DECL and c.is_definition() and c.spelling not in seen_structs:
            seen_structs.add(c.spelling)
            decls.append(("struct", c))
        elif c.kind == K.TYPEDEF_DECL:
            under = c.underlying_typedef_type.get_canonical()
            if under.kind == ci.TypeKind.POINTER and under.get_pointee().kind == ci.TypeKind.FUNCTIONPROTO:
                decls.append(("fnptr", c))
    return decls


def macro_text(cursor):
    toks = [t.spelling for t in cursor.get_tokens()]
    return "#define " + toks[0] + " " + "".join(toks[1:])


def generate(ci, header, out_dir):
    sha = hashlib.sha256(header.read_bytes()).hexdigest()
    m = Mapper(ci)
    decls = read_header(ci, header)
    files = {f"{HEADER_CLASS}.java": emit_header_class(m, decls, sha)}
    for kind, d in decls:
        if kind == "struct":
            files[f"{d.spelling}.java"] = emit_struct(m, d)
        elif kind == "fnptr":
            files[f"{d.spelling}.java"] = emit_fnptr(m, d)
    files["BindingsStamp.java"] = emit_stamp(sha, [d.spelling for k, d in decls if k == "function"],
                                             [d.spelling for k, d in decls if k == "struct"],
                                             [d[0] for k, d in decls if k == "macro"])
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.java"):
        if old.name not in files:
            old.unlink()
    for fname, text in files.items():
        (out_dir / fname).write_text(text, encoding="utf-8")
    return sorted(files)


def check(ci, header, committed):
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        names = generate(ci, header, fresh)
        committed_names = sorted(p.name for p in committed.glob("*.java")) if committed.exists() else []
        diff = []
        for n in sorted(set(names) | set(committed_names)):
            a = (committed / n).read_text(encoding="utf-8").splitlines(True) if n in committed_names else []
            b = (fresh / n).read_text(encoding="utf-8").splitlines(True) if n in names else []
            diff += difflib.unified_diff(a, b, f"committed/{n}", f"generated/{n}")
        if diff:
            sys.stdout.writelines(diff)
            print(f"\nerror: the committed bindings in {committed.relative_to(REPO)} differ from what {HEADER_REL} "
                  f"generates (diff above); run `{REGENERATE}` and commit the result", file=sys.stderr)
            return 1
        print(f"bindings are up to date with {HEADER_REL} ({len(names)} files)")
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="fail with a diff when the committed bindings are stale")
    ap.add_argument("--system-clang", action="store_true",
                    help="use the clang.cindex already importable instead of the pinned venv")
    args = ap.parse_args()
    ci = ensure_clang(args)
    if args.check:
        sys.exit(check(ci, HEADER, OUT_DIR))
    names = generate(ci, HEADER, OUT_DIR)
    print(f"wrote {len(names)} files to {OUT_DIR.relative_to(REPO)}")


if __name__ == "__main__":
    main()
