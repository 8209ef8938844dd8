"""Builds foresight-client with its gRPC stubs generated from the repository's `proto/` (two
folders up) by grpcio-tools: at every build or install, so the client always matches the protos
it was built from."""

import pathlib
import re

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
PROTOS = ["foresight/v1/calibration.proto", "foresight/v1/market_data.proto", "foresight/v1/models.proto"]


class BuildWithStubs(build_py):
    """`build_py`, then protoc into `foresight_client/_generated/`."""

    def run(self):
        super().run()
        import importlib.resources

        from grpc_tools import protoc

        out = pathlib.Path(self.build_lib) / "foresight_client" / "_generated"
        out.mkdir(parents=True, exist_ok=True)
        well_known = str(importlib.resources.files("grpc_tools") / "_proto")
        args = ["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}", *PROTOS]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {PROTO_ROOT}")
        # The stubs import each other as `foresight.v1`; inside this package that is
        # `foresight_client._generated.foresight.v1`.
        for path in out.rglob("*.py"):
            text = re.sub(r"^from foresight\.v1 import", "from foresight_client._generated.foresight.v1 import", path.read_text(), flags=re.M)
            path.write_text(text)
        for package in (out, out / "foresight", out / "foresight" / "v1"):
            (package / "__init__.py").touch()


setup(cmdclass={"build_py": BuildWithStubs})
