"""Lists foresight-serve's services through server reflection v1alpha with Python's own
grpcio-reflection client (the protocol it and several GUI clients still speak).

    python tests/clients/reflection_v1alpha.py HOST:PORT

Prints one service name per line, then describes foresight.v1.CalibrationService's methods.
"""

import sys

import grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase


def main(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        for service in database.get_services():
            print(service)
        described = database.FindFileContainingSymbol("foresight.v1.CalibrationService")
        methods = [m.name for s in described.service if s.name == "CalibrationService" for m in s.method]
        print("CalibrationService methods:", ",".join(methods))


if __name__ == "__main__":
    main(sys.argv[1])
