"""Training: `chatforge train` (LoRA / full / freeze fine-tuning and continued pretraining) on transformers.Trainer.

    from chatforge.train.config import TrainConfig
    from chatforge.train.run import train
"""
