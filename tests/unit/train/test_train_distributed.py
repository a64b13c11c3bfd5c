"""`torchrun --nproc_per_node 2` (gloo, CPU) trains like one process with the same global batch."""

import json

from train_helpers import cli_args, finish, read_metrics, start

# Stated tolerance: per-step losses agree to 1e-4 (fp32; only the order of the gradient sums differs).
TOLERANCE = 1e-4


def test_two_processes_match_one_process_with_the_same_global_batch(make_cfg, tmp_path):
    common = dict(method="full", lr=1e-3, max_steps=6, save_every=6, eval_every=3, batch_tokens=512)
    single = make_cfg(out=str(tmp_path / "single"), **common)
    double = make_cfg(out=str(tmp_path / "ddp"), **common)
    ddp = start(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "chatforge",
                 *cli_args(double)])
    code, _, err = finish(start(["-m", "chatforge", *cli_args(single)]))
    assert code == 0, err
    code, _, err = finish(ddp)
    assert code == 0, err

    stats = {name: json.loads((tmp_path / name / "data_stats.json").read_text())["batching"]
             for name in ("single", "ddp")}
    assert (stats["single"]["processes"], stats["single"]["gradient_accumulation"]) == (1, 2)
    assert (stats["ddp"]["processes"], stats["ddp"]["gradient_accumulation"]) == (2, 1)
    assert stats["single"]["tokens_per_step"] == stats["ddp"]["tokens_per_step"]
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["processes"] == 2

    a, b = read_metrics(tmp_path / "single"), read_metrics(tmp_path / "ddp")
    train_a = [r["loss"] for r in a if "loss" in r]
    train_b = [r["loss"] for r in b if "loss" in r]
    assert len(train_a) == len(train_b) == 6
    assert max(abs(x - y) for x, y in zip(train_a, train_b)) <= TOLERANCE, (train_a, train_b)
    assert [r["tokens_seen"] for r in a] == [r["tokens_seen"] for r in b]
    eval_a = [r["eval_loss"] for r in a if "eval_loss" in r]
    eval_b = [r["eval_loss"] for r in b if "eval_loss" in r]
    assert len(eval_a) == len(eval_b) >= 2
    assert max(abs(x - y) for x, y in zip(eval_a, eval_b)) <= TOLERANCE
    assert (tmp_path / "ddp" / "final" / "model.safetensors").is_file()


_VOTE = """
import os, sys
from pathlib import Path
from chatforge.train.run import all_agree, end_processes
rank = int(os.environ["RANK"])
Path(sys.argv[1], f"rank{rank}").write_text(f"{all_agree(rank == 0)} {all_agree(True)}")
end_processes()
"""


def test_processes_agree_on_bf16_when_their_measurements_differ(tmp_path):
    # each CPU process measures bf16's speed itself (--precision auto); near the threshold two may differ, and
    # then none trains in bf16 (a rank in another precision than the rest would not train the same model)
    script = tmp_path / "vote.py"
    script.write_text(_VOTE)
    code, _, err = finish(start(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                                 str(script), str(tmp_path)]))
    assert code == 0, err
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["False True", "False True"]
