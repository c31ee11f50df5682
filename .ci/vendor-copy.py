#!/usr/bin/env python3
"""Prepares the copy of a vendored crate that .ci/vendor-tests.sh tests outside the workspace.

  vendor-copy.py manifest CRATE_DIR                   makes the copy's Cargo.toml a workspace
                                                      and drops dev-dependencies src/ never names
  vendor-copy.py seed WORKSPACE_LOCK CRATE_LOCK OUT   writes the seed lock file
  vendor-copy.py check SEED RESOLVED                  fails if cargo chose a version not in SEED

Only the library's own tests are run, so dev-dependencies that only benches and examples use
(criterion, a jemalloc build, ...) are removed from the copy: they were most of the build's cost.
A dev-dependency is kept when its name appears anywhere in src/, so one that a future upgrade
starts to use stays, and a wrongly dropped one fails the build loudly rather than a test quietly.

The seed is the workspace's Cargo.lock (so every crate sluice ships is tested at the version it
ships), plus, for crates only the vendored crate's tests use (its dev-dependencies and what they
pull in), the versions pinned by the Cargo.lock that crates.io published with the crate. A crate
of the second lock is added only where the workspace has no semver-compatible version of it; every
dependency edge is rewritten as `name version` so that the merged file is unambiguous.

Cargo then resolves against the seed, keeping every version in it and dropping what the copy does
not use (which is why `--locked` cannot be used on the seed itself: pruning rewrites the file).
`check` asserts afterwards that nothing was resolved afresh from the crates.io index, so the
build never depends on what the index holds today.
"""
import os
import re
import sys
import tomllib


def manifest(crate_dir):
    path = os.path.join(crate_dir, "Cargo.toml")
    src = []
    for base, _, files in os.walk(os.path.join(crate_dir, "src")):
        for name in files:
            with open(os.path.join(base, name), errors="replace") as f:
                src.append(f.read())
    src = "\n".join(src)
    # crates.io's normalised manifests give each dependency its own table, e.g.
    # [dev-dependencies.criterion] or [target."cfg(unix)".dev-dependencies.jemallocator].
    header = re.compile(r'^\[(?:target\."[^"]*"\.)?dev-dependencies\.([A-Za-z0-9_-]+)\]$')
    out, dropped, skipping = [], [], False
    with open(path) as f:
        for line in f.read().splitlines():
            if line.startswith("["):
                m = header.match(line)
                name = m and m.group(1)
                skipping = bool(name) and not re.search(rf"\b{name.replace('-', '_')}\b", src)
                if skipping:
                    dropped.append(name)
            if not skipping:
                out.append(line)
    out += ["", "# Added by .ci/vendor-tests.sh: this copy is its own workspace.", "[workspace]"]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"vendor copy: dev-dependencies unused by src/ dropped: {', '.join(dropped) or 'none'}")


def compat(version):
    """The semver-compatibility class: 1.2.3 -> "1", 0.2.3 -> "0.2", 0.0.3 -> "0.0.3"."""
    parts = version.split("+")[0].split("-")[0].split(".")
    if parts[0] != "0":
        return parts[0]
    if parts[1] != "0":
        return "0." + parts[1]
    return "0.0." + parts[2]


def load(path):
    with open(path, "rb") as f:
        return tomllib.load(f)


def resolver(packages):
    """Maps a lock file's dependency strings ("name", "name version", "name version (source)") to
    (name, version)."""
    by_name = {}
    for p in packages:
        by_name.setdefault(p["name"], []).append(p["version"])

    def resolve(dep):
        fields = dep.split(" ")
        if len(fields) >= 2:
            return fields[0], fields[1]
        (only,) = by_name[fields[0]]
        return fields[0], only

    return resolve


def seed(workspace_path, crate_path, out_path):
    workspace = load(workspace_path)
    crate = load(crate_path)
    ws_packages = workspace["package"]
    ws_classes = {(p["name"], compat(p["version"])): p["version"] for p in ws_packages}
    # Path packages of the crate's lock (the crate itself) are the copy's own, never registry pins.
    extra = [
        p
        for p in crate["package"]
        if "source" in p and (p["name"], compat(p["version"])) not in ws_classes
    ]
    kept = {(p["name"], p["version"]) for p in ws_packages + extra}

    def rewrite(packages, resolve):
        for p in packages:
            deps = []
            for dep in p.get("dependencies", []):
                name, version = resolve(dep)
                if (name, version) not in kept:
                    # Replaced by the workspace's compatible version, or not pinned at all.
                    version = ws_classes.get((name, compat(version)))
                    if version is None:
                        continue
                deps.append(f"{name} {version}")
            yield p, deps

    lines = ["# Seed lock file written by .ci/vendor-copy.py; cargo rewrites it.", ""]
    lines.append(f"version = {workspace.get('version', 3)}")
    entries = list(rewrite(ws_packages, resolver(ws_packages)))
    entries += list(rewrite(extra, resolver(crate["package"])))
    for p, deps in entries:
        lines += ["", "[[package]]", f'name = "{p["name"]}"', f'version = "{p["version"]}"']
        for key in ("source", "checksum"):
            if key in p:
                lines.append(f'{key} = "{p[key]}"')
        if deps:
            lines.append("dependencies = [")
            lines += [f' "{d}",' for d in deps]
            lines.append("]")
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(
        f"vendor lock seed: {len(ws_packages)} packages from {workspace_path}, "
        f"{len(extra)} test-only from {crate_path}"
    )


def check(seed_path, resolved_path):
    pinned = {(p["name"], p["version"]) for p in load(seed_path)["package"]}
    resolved = [p for p in load(resolved_path)["package"] if "source" in p]
    floating = sorted(
        f"{p['name']} {p['version']}" for p in resolved if (p["name"], p["version"]) not in pinned
    )
    if floating:
        sys.exit(
            "vendored tests: cargo resolved versions that no committed lock file pins "
            f"(update Cargo.lock or the vendored crate's Cargo.lock): {', '.join(floating)}"
        )
    print(f"vendor lock: all {len(resolved)} registry packages pinned by committed lock files")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "manifest":
        manifest(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "seed":
        seed(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        check(*sys.argv[2:])
    else:
        sys.exit(__doc__)
