"""Generate (or check) the Python code of the protobuf contracts.

Run as ``python -m accrual_platform.protogen PROTO_DIR OUT_DIR [--check]``. The include path
comes from installed packages (grpcio-tools for ``google/protobuf``, googleapis-common-protos
for ``google/api``), so generation needs nothing but the locked environment.

Besides the modules it writes ``accrual/descriptors.binpb``, a descriptor set of the project's
own files with source info, so the OpenAPI document can carry the proto comments.
"""

from __future__ import annotations

import argparse
import filecmp
import pathlib
import sys
import tempfile

import google.api.annotations_pb2
import grpc_tools
from grpc_tools import protoc

DESCRIPTOR_SET = "accrual/descriptors.binpb"


def generate(proto_dir: pathlib.Path, out_dir: pathlib.Path) -> None:
    files = sorted(str(p.relative_to(proto_dir)) for p in proto_dir.rglob("*.proto"))
    googleapis = pathlib.Path(google.api.annotations_pb2.__file__).parents[2]
    wkt = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    (out_dir / DESCRIPTOR_SET).parent.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{proto_dir}",
        f"-I{googleapis}",
        f"-I{wkt}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--descriptor_set_out={out_dir / DESCRIPTOR_SET}",
        "--include_source_info",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package_dir in {p.parent for p in out_dir.rglob("*_pb2.py")}:
        (package_dir / "__init__.py").touch()


def _same_tree(a: pathlib.Path, b: pathlib.Path) -> list[str]:
    diff: list[str] = []
    names_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    names_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    diff += [f"missing: {n}" for n in sorted(names_a - names_b)]
    diff += [f"extra: {n}" for n in sorted(names_b - names_a)]
    diff += [f"stale: {n}" for n in sorted(names_a & names_b) if not filecmp.cmp(a / n, b / n, shallow=False)]
    return diff


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("proto_dir", type=pathlib.Path)
    parser.add_argument("out_dir", type=pathlib.Path)
    parser.add_argument("--check", action="store_true")
    ns = parser.parse_args()
    if not ns.check:
        generate(ns.proto_dir, ns.out_dir)
        return
    with tempfile.TemporaryDirectory() as tmp:
        fresh = pathlib.Path(tmp)
        generate(ns.proto_dir, fresh)
        diff = _same_tree(fresh / "accrual", ns.out_dir / "accrual")
    if diff:
        print("generated code is stale; run `make proto`:", *diff, sep="\n  ", file=sys.stderr)
        raise SystemExit(1)
    print("generated code is fresh")


if __name__ == "__main__":
    main()
