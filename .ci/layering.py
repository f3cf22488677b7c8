#!/usr/bin/env python3
"""Keeps the dependency arrows of src/ pointing one way (README, "Code layout").

    main (CLI, demo)
      -> lib run / proxy / admin / tls          (pingora lives here)
           -> runtime                           (Snapshot assembled from Config, reload)
                -> auth, metrics
                     -> config                  (pure data: schema, load, validate)
                          -> formats            (pure parsers; imports nothing of ours)

A module may name only the modules of ours listed for it, and only the server layer may
name pingora. Comments are ignored; `crate::{a, b::c}` groups are read name by name.
Run with `--self-test` to see each rule catch a planted violation.
"""

import pathlib
import re
import sys

OURS = {"admin", "auth", "config", "formats", "httpd", "metrics", "proxy", "runtime", "tls"}

# module -> (modules of ours it may name, may it name pingora)
RULES = {
    "formats": ({"formats"}, False),
    "config": ({"config", "formats"}, False),
    "metrics": ({"metrics"}, False),
    "auth": ({"auth", "config", "formats", "metrics"}, False),
    "runtime": ({"runtime", "auth", "config", "formats", "metrics"}, True),
}

USE_GROUP = re.compile(r"\bcrate::\{([^}]*)\}")
USE_PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
PINGORA = re.compile(r"\bpingora(?:_[a-z]+)?::")


def module_of(rel: pathlib.PurePosixPath) -> str | None:
    """`src/auth/cache.rs` -> `auth`; `src/metrics.rs` -> `metrics`."""
    parts = rel.parts
    if len(parts) < 2 or parts[0] != "src":
        return None
    top = parts[1]
    return top[:-3] if top.endswith(".rs") else top


STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def code_lines(text: str):
    """Each line without its string literals and `//` comment."""
    for number, line in enumerate(text.splitlines(), 1):
        code = STRING.sub('""', line).split("//", 1)[0]
        if code.strip():
            yield number, code


def names(code: str):
    for group in USE_GROUP.findall(code):
        for item in group.split(","):
            item = item.strip()
            if item:
                yield item.split("::", 1)[0].strip()
    for name in USE_PATH.findall(USE_GROUP.sub("", code)):
        yield name


def violations(files):
    """`files`: (relative path, text) pairs. Yields one message per broken rule."""
    for rel, text in files:
        module = module_of(pathlib.PurePosixPath(rel))
        if module not in RULES:
            continue
        allowed, pingora_ok = RULES[module]
        for number, code in code_lines(text):
            for name in names(code):
                if name in OURS and name not in allowed:
                    yield f"{rel}:{number}: `{module}` must not depend on `crate::{name}` (allowed: {', '.join(sorted(allowed))})"
            if not pingora_ok and PINGORA.search(code):
                yield f"{rel}:{number}: `{module}` must not depend on pingora"


def self_test() -> int:
    planted = [
        ("src/config/build.rs", "use crate::auth::Reject;\n", "crate::auth"),
        ("src/config.rs", "use crate::{formats::pem, metrics::Metrics};\n", "crate::metrics"),
        ("src/config/x.rs", "use crate::runtime::State;\n", "crate::runtime"),
        ("src/config/x.rs", "fn f(_: pingora::Error) {}\n", "pingora"),
        ("src/auth/cache.rs", "use crate::proxy::Gateway;\n", "crate::proxy"),
        ("src/auth.rs", "use pingora_core::protocols::Stream;\n", "pingora"),
        ("src/metrics.rs", "use crate::auth::Reject;\n", "crate::auth"),
        ("src/metrics.rs", "    E = pingora::ErrorType::ReadError,\n", "pingora"),
        ("src/formats/pem.rs", "use crate::config::Config;\n", "crate::config"),
        ("src/runtime.rs", "use crate::proxy::Outcome;\n", "crate::proxy"),
    ]
    clean = [
        ("src/config.rs", "// crate::auth is mentioned in a comment only\nuse crate::formats::pem::Pair;\n"),
        ("src/auth.rs", "use crate::config::{Config, ProviderId};\n"),
        ("src/proxy.rs", "use crate::runtime::State;\nuse pingora::prelude::*;\n"),
        ("src/formats.rs", 'const U: &str = "http://x/crate::auth";\n'),
    ]
    failed = 0
    for rel, text, what in planted:
        found = list(violations([(rel, text)]))
        if not any(what in v for v in found):
            print(f"self-test: a planted `{what}` in {rel} was not caught", file=sys.stderr)
            failed += 1
    for rel, text in clean:
        found = list(violations([(rel, text)]))
        if found:
            print(f"self-test: a clean {rel} was refused: {found}", file=sys.stderr)
            failed += 1
    print(f"layering self-test: {len(planted)} violations caught, {len(clean)} clean files passed" if not failed else "layering self-test FAILED")
    return 1 if failed else 0


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
