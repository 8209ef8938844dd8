"""Drives foresight-serve's Open Inference Protocol with Triton's own Python client.

tritonclient[grpc] is the most used OIP client; it sends raw_input_contents and reads answers
with InferResult.as_numpy, which needs raw_output_contents. Usage (the Rust test runs it):

    python tests/clients/oip_triton.py HOST:PORT models/<name>/v<n>/card.json

It checks live/ready, the model's metadata against the card, and that every golden row of the
card gives the card's outputs to 1e-9 (relative); it prints one line and exits 0, or fails.
"""

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient


def main(address: str, card_path: str) -> None:
    with open(card_path) as f:
        card = json.load(f)
    name, version = card["name"], str(card["version"])
    client = grpcclient.InferenceServerClient(url=address)
    assert client.is_server_live(), "server not live"
    assert client.is_server_ready(), "server not ready"
    assert client.is_model_ready(name, version), f"{name} v{version} not ready"
    meta = client.get_model_metadata(name, version)
    assert [o.name for o in meta.outputs] == card["onnx"]["outputs"], meta.outputs

    # The card stores a missing exogenous input as null: NaN on the wire.
    rows = np.array([g["input"] for g in card["golden"]], dtype=np.float64)
    tensor = grpcclient.InferInput(card["onnx"]["input"], list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    outputs = [grpcclient.InferRequestedOutput(o) for o in card["onnx"]["outputs"]]
    result = client.infer(name, [tensor], model_version=version, outputs=outputs)
    checked = 0
    for output in card["onnx"]["outputs"]:
        got = result.as_numpy(output)
        want = np.array([g["outputs"][output] for g in card["golden"]], dtype=np.float64)
        assert got.shape == want.shape, (output, got.shape, want.shape)
        scale = np.maximum(np.abs(want), 1e-12)
        worst = float(np.max(np.abs(got - want) / scale))
        assert worst <= 1e-9, f"{output}: relative error {worst}"
        checked += got.size
    print(f"tritonclient {grpcclient.__name__}: {name} v{version}, {len(rows)} golden rows, {checked} values within 1e-9")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
