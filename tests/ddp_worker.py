"""Run by tests/test_distributed.py under torchrun: trains each case of CASES (a JSON file) into
OUT/<name> with genlab.train, so that the test can compare it with a one-process run."""
import json
import sys

import torch

import genlab

torch.set_num_threads(1)
cases = json.loads(open(sys.argv[1]).read())
for name, c in cases.items():
    genlab.train(c["model"], c["data"], out=f"{sys.argv[2]}/{name}", steps=c["steps"], batch_size=c["batch_size"],
                 set=c["set"], device="cpu", evaluate_at_end=False)
