"""A signature of a LiteRT interpreter as a plain function of positional int8 arrays.

The stock SignatureRunner resizes every input and re-plans the arena on every call, and it
matches inputs by keyword. A training step calls the same signature 2m times with the same
shapes, so this one resizes and allocates only when an input shape changes: a call then costs
one copy per input, the invoke, and one copy of the output. It uses the interpreter wrapper's
subgraph-indexed calls (the same ones SignatureRunner makes), since the public Interpreter
methods only reach subgraph 0.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from ai_edge_litert.interpreter import Interpreter


class SignatureFn:
    """fn(*inputs) -> list of outputs, in the order of `input_names` / `output_names`."""

    def __init__(self, interpreter: Interpreter, key: str, input_names: Sequence[str], output_names: Sequence[str]):
        signature = interpreter._get_full_signature_list()[key]
        missing = [n for n in input_names if n not in signature["inputs"]] + \
                  [n for n in output_names if n not in signature["outputs"]]
        if missing or len(input_names) != len(signature["inputs"]):
            raise ValueError(f"signature {key!r} has inputs {sorted(signature['inputs'])} and outputs "
                             f"{sorted(signature['outputs'])}; asked for {list(input_names)} -> {list(output_names)}")
        self.key = key
        self._interpreter = interpreter  # keeps the wrapper's owner alive
        self._wrapper = interpreter._interpreter
        self._subgraph = self._wrapper.GetSubgraphIndexFromSignature(key)
        self._inputs = [signature["inputs"][n] for n in input_names]
        self._outputs = [signature["outputs"][n] for n in output_names]
        self._shapes: tuple | None = None

    def __call__(self, *arrays: np.ndarray, first: int | None = None) -> list[np.ndarray]:
        """The outputs, or only the first `first` of them (the others are not copied out)."""
        shapes = tuple(a.shape for a in arrays)
        if shapes != self._shapes:
            for index, a in zip(self._inputs, arrays):
                self._wrapper.ResizeInputTensor(index, np.array(a.shape, np.int32), False, self._subgraph)
            self._wrapper.AllocateTensors(self._subgraph)
            self._shapes = shapes
        for index, a in zip(self._inputs, arrays):
            self._wrapper.SetTensor(index, a, self._subgraph)
        self._wrapper.Invoke(self._subgraph)
        return [self._wrapper.GetTensor(index, self._subgraph) for index in self._outputs[:first]]
