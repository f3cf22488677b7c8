#!/usr/bin/env python3
"""Keeps the dependency arrows of src/ pointing one way (README, "Layout").

    main (CLI, demo)
      -> lib run / proxy / admin                (the server layer)
           -> tls, httpd
           -> runtime                           (Snapshot assembled from Config, reload)
                -> auth -> metrics
                     -> config                  (pure data: schema, load, validate)
                          -> formats            (pure parsers; imports nothing of ours)

A module may name only the modules of ours listed for it (`crate::x`, `super::…` that climbs
to the crate root, in `use` trees of any shape, or inline), and only the server layer and
the runtime (which turns CA certificates into pingora's form) may name pingora. Comments and
string literals are ignored. `--self-test` shows each rule catching a planted violation.
"""

import pathlib
import re
import sys

OURS = {"admin", "auth", "config", "formats", "httpd", "metrics", "proxy", "runtime", "tls"}

# module -> (modules of ours it may name, may it name pingora). Modules not listed here
# (proxy, admin, the crate root) are the top of the library and may name anything.
RULES = {
    "formats": ({"formats"}, False),
    "config": ({"config", "formats"}, False),
    "metrics": ({"metrics"}, False),
    "auth": ({"auth", "config", "formats", "metrics"}, False),
    "runtime": ({"runtime", "auth", "config", "formats", "metrics"}, True),
    "httpd": ({"httpd"}, False),
    "tls": ({"tls", "formats", "metrics", "runtime"}, True),
}

# Comments, raw strings, strings and char literals, matched left to right in one pass so
# that a quote inside a comment or `//` inside a string is read as what it is.
SKIP = re.compile(
    r"//[^\n]*|/\*.*?\*/|r(#*)\".*?\"\1|b?\"(?:[^\"\\]|\\.)*\"|b?'(?:\\.|[^'\\\n])'",
    re.S,
)
USE = re.compile(r"\buse\s+([^;]*);", re.S)
INLINE = re.compile(r"\bcrate\s*::\s*([a-z_][a-z0-9_]*)")
PINGORA = re.compile(r"\bpingora(?:_[a-z0-9]+)?\b")


def module_path(rel: pathlib.PurePosixPath) -> list[str] | None:
    """`src/auth/keystore/refresh.rs` -> ['auth', 'keystore', 'refresh']."""
    parts = list(rel.parts)
    if len(parts) < 2 or parts[0] != "src":
        return None
    parts = parts[1:]
    parts[-1] = parts[-1][:-3]
    if parts[-1] == "mod":
        parts.pop()
    return parts


def strip(text: str) -> str:
    """The code without comments and literals; line numbers kept."""
    return SKIP.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def tree_roots(tree: str):
    """The first segment of every path in a `use` tree, e.g. `crate::{a::x, b}` -> crate::a,
    crate::b; `super::super::{c, d}` -> super::super::c, ..."""
    tree = re.sub(r"\s+", "", tree)

    def walk(prefix: list[str], t: str):
        if t.startswith("{") and t.endswith("}"):
            depth, start = 0, 1
            for i, ch in enumerate(t):
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                if (ch == "," and depth == 1) or i == len(t) - 1:
                    item = t[start:i]
                    if item:
                        yield from walk(prefix, item)
                    start = i + 1
            return
        head, _, rest = t.partition("::")
        head = head.split(" as ")[0]
        if head in ("crate", "super", "self") and rest:
            yield from walk(prefix + [head], rest)
        else:
            yield prefix + [head]

    yield from walk([], tree)


def resolve(path: list[str], here: list[str]) -> str | None:
    """The top-level module of ours a path names, if any."""
    if path and path[0] == "crate":
        return path[1] if len(path) > 1 else None
    ups = 0
    while ups < len(path) and path[ups] == "super":
        ups += 1
    if ups == 0:
        return None
    # `super` from a file `a/b.rs` (module a::b) is `a`; from `a.rs` it is the crate root.
    base = here[: len(here) - ups]
    if base:
        return base[0]
    return path[ups] if ups < len(path) else None


def violations(files):
    """`files`: (relative path, text) pairs. Yields one message per broken rule."""
    for rel, text in files:
        here = module_path(pathlib.PurePosixPath(rel))
        if not here or here[0] not in RULES:
            continue
        module = here[0]
        allowed, pingora_ok = RULES[module]
        code = strip(text)
        line_of = lambda pos: code.count("\n", 0, pos) + 1
        found = []
        for m in USE.finditer(code):
            for path in tree_roots(m.group(1)):
                name = resolve(path, here)
                if path and path[0] not in ("crate", "super", "self") and PINGORA.fullmatch(path[0]):
                    found.append((line_of(m.start()), "pingora"))
                elif name in OURS and name not in allowed:
                    found.append((line_of(m.start()), name))
        for m in INLINE.finditer(USE.sub(lambda u: " " * len(u.group(0)), code)):
            if m.group(1) in OURS and m.group(1) not in allowed:
                found.append((line_of(m.start()), m.group(1)))
        if not pingora_ok:
            for m in PINGORA.finditer(code):
                found.append((line_of(m.start()), "pingora"))
        for number, name in sorted(set(found)):
            if name == "pingora":
                if not pingora_ok:
                    yield f"{rel}:{number}: `{module}` must not depend on pingora"
            else:
                yield f"{rel}:{number}: `{module}` must not depend on `crate::{name}` (allowed: {', '.join(sorted(allowed))})"


def self_test() -> int:
    planted = [
        ("src/config/build.rs", "use crate::auth::Reject;\n", "crate::auth"),
        ("src/config.rs", "use crate::{formats::pem, metrics::Metrics};\n", "crate::metrics"),
        ("src/config.rs", "use crate::{\n    formats::pem,\n    runtime::State,\n};\n", "crate::runtime"),
        ("src/config.rs", "use crate::{formats::{pem, hex}, proxy::Outcome};\n", "crate::proxy"),
        ("src/config/build/server.rs", "use super::super::super::auth::Reject;\n", "crate::auth"),
        ("src/config.rs", "use super::metrics::Metrics;\n", "crate::metrics"),
        ("src/config/x.rs", "fn f(_: pingora::Error) {}\n", "pingora"),
        ("src/config/x.rs", "use pingora_core as pc;\n", "pingora"),
        ("src/auth/cache.rs", "fn f() { crate::proxy::guard::install_hook(); }\n", "crate::proxy"),
        ("src/auth.rs", "use pingora_core::protocols::Stream;\n", "pingora"),
        ("src/auth/x.rs", "use crate::runtime::Snapshot;\n", "crate::runtime"),
        ("src/metrics.rs", "use crate::auth::Reject;\n", "crate::auth"),
        ("src/metrics.rs", "    E = pingora::ErrorType::ReadError,\n", "pingora"),
        ("src/formats/pem.rs", "use crate::config::Config;\n", "crate::config"),
        ("src/runtime.rs", "use crate::proxy::Outcome;\n", "crate::proxy"),
        ("src/auth/x.rs", "const Q: u8 = b'\"';\nuse crate::proxy::Outcome;\nconst P: u8 = b'\"';\n", "crate::proxy"),
        ("src/httpd.rs", "use crate::runtime::State;\n", "crate::runtime"),
        ("src/tls.rs", "use crate::proxy::Gateway;\n", "crate::proxy"),
    ]
    clean = [
        ("src/config.rs", "// crate::auth is mentioned in a comment\n/* and crate::proxy here */\nuse crate::formats::pem::Pair;\n"),
        ("src/config/build/providers.rs", "use super::super::{ProviderSettings, RevocationFile};\nuse super::{at, Ctx};\n"),
        ("src/auth.rs", "use crate::config::{Config, ProviderId};\nuse self::cache::TokenCache;\n"),
        ("src/auth/keystore/refresh.rs", "use super::super::jwks;\nuse crate::metrics::Metrics;\n"),
        ("src/proxy.rs", "use crate::runtime::State;\nuse pingora::prelude::*;\n"),
        ("src/formats.rs", 'const U: &str = "http://x/crate::auth";\nconst R: &str = r#"use crate::proxy;"#;\n'),
        ("src/auth/x.rs", "const Q: u8 = b'\"';\nconst S: &str = \"a\\\n  crate::proxy\";\nfn f<'a>(x: &'a str) {}\n"),
        ("src/runtime.rs", "use crate::{auth::Context, config::{Config, ProviderId}};\nfn f(_: pingora::Error) {}\n"),
    ]
    failed = 0
    for rel, text, what in planted:
        found = list(violations([(rel, text)]))
        if not any(what in v for v in found):
            print(f"self-test: a planted `{what}` in {rel} was not caught ({found})", file=sys.stderr)
            failed += 1
    for rel, text in clean:
        found = list(violations([(rel, text)]))
        if found:
            print(f"self-test: a clean {rel} was refused: {found}", file=sys.stderr)
            failed += 1
    if failed:
        print("layering self-test FAILED", file=sys.stderr)
        return 1
    print(f"layering self-test: {len(planted)} planted violations caught, {len(clean)} clean files passed")
    return 0


def main() -> int:
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    root = pathlib.Path(__file__).resolve().parent.parent
    files = [
        (p.relative_to(root).as_posix(), p.read_text())
        for p in sorted((root / "src").rglob("*.rs"))
    ]
    found = list(violations(files))
    for v in found:
        print(v, file=sys.stderr)
    if found:
        print(f"layering: {len(found)} dependencies point the wrong way", file=sys.stderr)
        return 1
    print(f"layering: {len(files)} files of src/, every dependency points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
