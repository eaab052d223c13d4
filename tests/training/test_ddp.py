"""Two CPU processes under torchrun (gloo): DDP keeps both ranks' weights identical."""

import json
import subprocess
import sys

import torch
from safetensors.torch import load_file

WORKER = """
import json, os, sys
from safetensors.torch import save_file
from medgen.training import parse_config, train
cfg = parse_config(json.load(open(sys.argv[1])))
result = train(cfg, sys.argv[2], device="cpu", progress=False)
rank = os.environ["RANK"]
save_file({f"{n}.{k}": v.detach().contiguous() for n, net in result.nets.items()
           for k, v in net.state_dict().items()}, os.path.join(sys.argv[3], f"rank{rank}.safetensors"))
"""


def test_two_process_ddp_on_cpu_keeps_ranks_identical(tmp_path, tiny_config):
    cfg = tiny_config("gan", train={"steps": 2, "batch_size": 1})  # 2 training subjects: one per rank
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    (tmp_path / "worker.py").write_text(WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(tmp_path / "worker.py"), str(tmp_path / "cfg.json"), str(tmp_path / "run"), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys() and len(a) > 0
    assert all(torch.equal(a[k], b[k]) for k in a)
    # rank 0 alone wrote the run folder; the model trained 2 steps on both shards
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2
