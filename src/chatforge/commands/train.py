"""Fine-tune a model on your data: LoRA (default), full or freeze; raw text continues pretraining; preference
pairs tune it with DPO (--method dpo), answers labelled good / bad with KTO (--method kto).

Examples:
  chatforge train --data examples/data/lumora_train.jsonl            # LoRA on the default model
  chatforge train --data chats.jsonl --method full --epochs 3 --out runs/support
  chatforge train --out runs/support --resume                        # continue after a stop or a crash
  chatforge train --config runs/support/config.yaml --out runs/again # repeat a run exactly
  torchrun --nproc_per_node 2 -m chatforge train --data chats.jsonl  # data-parallel on 2 processes
  chatforge train --model runs/support --method dpo --data pairs.jsonl --out runs/support-dpo  # after SFT

Every option can also be set in a YAML file (--config); command-line flags win. The run directory holds
config.yaml, run.json, data_stats.json, metrics.jsonl, tb/ (TensorBoard), checkpoints/, final/ and a model card
README.md, and works wherever a model does: chatforge chat|eval|serve|export runs/NAME.
Exit codes: 0 done, 1 failure (NaN loss, full disk), 2 bad input, 130 interrupted by Ctrl-C (--resume continues
from the last complete checkpoint), 143 stopped by SIGTERM (checkpoint saved).
"""

from chatforge import config
from chatforge.train.config import TrainConfig

EXIT_SIGTERM = 143  # 128 + SIGTERM, as a shell reports a terminated process: `train && eval` stops here


def add_arguments(parser):
    parser.add_argument("--config", metavar="YAML", help="Read options from this YAML file (flags win).")
    config.add_arguments(parser, TrainConfig)


def run(args) -> int:
    import json
    import os
    from pathlib import Path

    from chatforge.train.callbacks import ProgressBar
    from chatforge.train.run import end_processes, print_summary, train

    yaml_file = args.config
    if yaml_file is None and args.resume and args.out and (Path(args.out) / "config.yaml").is_file():
        yaml_file = Path(args.out) / "config.yaml"  # `--out RUN --resume` continues with the run's own config
    cfg = config.build(TrainConfig, args, yaml_file)
    bar = ProgressBar()
    try:
        run_dir = train(cfg, on_event=bar)
    finally:
        bar.close()
        end_processes()
    info = json.loads((run_dir / "run.json").read_text())
    if info.get("status") == "interrupted":
        return EXIT_SIGTERM
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun: once, from process 0
        print_summary(run_dir, info)
    return 0
