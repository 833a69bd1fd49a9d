"""sizeup in a transformers.Trainer: muP for a Llama, trained by the Trainer you already use.

The parametrization hands the Trainer its optimizer (per-tensor learning rates, eps and weight
decay in the param groups) and an lr scheduler over it (one schedule scales every group alike,
so the per-tensor ratios hold at every step): ``Trainer(optimizers=(opt, sched))``. The Trainer's
own learning_rate and weight_decay are then not used. Runs in seconds on a CPU, on random tokens;
nothing is downloaded (the models are built from configs).

    python examples/hf_trainer.py
"""

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Trainer, TrainingArguments

import sizeup


def llama(width: int) -> torch.nn.Module:
    """A tiny Llama: four heads at every width (head_dim grows), MLP twice as wide."""
    cfg = LlamaConfig(
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=256,
        max_position_embeddings=64,
        use_cache=False,
    )
    return AutoModelForCausalLM.from_config(cfg)


torch.manual_seed(0)
base, model = llama(64), llama(128)  # base: the proxy whose lr you tuned
p = sizeup.parametrize(model, base=base, rule="mup", attn_scale="1/d")
opt = p.optimizer("adamw", lr=3e-3, weight_decay=0.1)
sched = p.scheduler(opt, "wsd", steps=3, warmup=1)

tokens = torch.randint(0, 256, (16, 33))
train = [{"input_ids": t, "labels": t} for t in tokens]  # the model shifts the labels itself
args = TrainingArguments(
    output_dir="hf-trainer-out",
    max_steps=3,
    per_device_train_batch_size=4,
    report_to="none",
    save_strategy="no",
    use_cpu=True,
    logging_steps=1,
    disable_tqdm=True,
)
trainer = Trainer(model=model, args=args, train_dataset=train, optimizers=(opt, sched))
result = trainer.train()
print(f"{result.global_step} steps, loss {result.training_loss:.3f}")

# The trained model as a plain checkpoint (multipliers folded into the weights):
# p.export().save_pretrained("llama-plain")
