"""Prints the workspace's functions in groups that can be checked in one cargo pass.

Cargo builds every package once per invocation with the union of the features its dependents
ask for. Checking two functions together is therefore the same as checking each alone exactly
when every package both depend on resolves to the same features in both. This groups greedily
under that rule (shared's features are what usually tell functions apart), one group per line,
names separated by spaces. Run from the workspace root.
"""

import pathlib
import subprocess


def resolved_features(package: str, functions: set[str]) -> dict[str, str]:
    """{dependency "name version": its features} when `package` is built alone (its build
    scripts' dependencies included: they are unified within one invocation too)."""
    tree = subprocess.run(
        ["cargo", "tree", "--locked", "--package", package, "--edges", "normal,build",
         "--prefix", "none", "--format", "{p}|{f}"],
        check=True, capture_output=True, text=True,
    ).stdout
    features = {}
    for line in tree.splitlines():
        name_version, _, enabled = line.partition("|")
        # `cargo tree` marks a repeated subtree with "(*)".
        name_version = name_version.removesuffix(" (*)").split(" (")[0]
        if name_version.split(" ")[0] not in functions:
            features[name_version] = enabled.removesuffix(" (*)").strip()
    return features


def main() -> None:
    functions = sorted(p.parent.name for p in pathlib.Path("functions").glob("*/Cargo.toml"))
    groups: list[tuple[list[str], dict[str, str]]] = []
    for function in functions:
        mine = resolved_features(function, set(functions))
        for members, theirs in groups:
            if all(theirs[dep] == enabled for dep, enabled in mine.items() if dep in theirs):
                members.append(function)
                theirs.update(mine)
                break
        else:
            groups.append(([function], dict(mine)))
    for members, _ in groups:
        print(" ".join(members))


if __name__ == "__main__":
    main()
