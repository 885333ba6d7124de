"""Training the neural rungs: one loop for the GPT and the MLP, on a CPU, a GPU, or several
GPUs through torchrun (DistributedDataParallel, NCCL on GPUs, gloo on CPUs).

    plan.py     everything checked before the first step: prepare() -> Job, the processes
                (Dist) and their CPU threads, the memory a run needs against the GPU's and
                the machine's (machine_problems)
    optim.py    AdamW, the learning-rate schedule, the moving average of the weights
    step.py     one step's mechanics: its batch, precision, loss and micro-batches, its CUDA graph
    records.py  what a run keeps: RunState, metrics.jsonl and the progress, its checkpoints
    loop.py     train(): the loop, read top to bottom

    job = prepare("tinyshakespeare", "char", config, "runs/gpt")
    result = train(job)
"""

from lmladder.train.loop import train
from lmladder.train.optim import WeightAverage, adopt_optimizer_state, lr_at, make_optimizer
from lmladder.train.plan import (Dist, Job, cpu_threads, device_memory, init_distributed, memory_needed, peak_flops,
                                 prepare)
from lmladder.train.records import TrainingDiverged
from lmladder.train.step import (GraphedStep, TrainStep, batch_windows, loss_function, set_attention_kernel, setup_cuda,
                                 training_autocast)

__all__ = ["Dist", "GraphedStep", "Job", "TrainStep", "TrainingDiverged", "WeightAverage", "adopt_optimizer_state",
           "batch_windows", "cpu_threads", "device_memory", "init_distributed", "loss_function", "lr_at",
           "make_optimizer", "memory_needed", "peak_flops", "prepare", "set_attention_kernel", "setup_cuda", "train",
           "training_autocast"]
