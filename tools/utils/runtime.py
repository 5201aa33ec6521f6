"""What both runners need: command line, config + model loading, device, seeds, distributed
context, logging, and turning user errors into a one-line message with a non-zero exit."""
import argparse
import os
import random
import sys
import time

import numpy as np
import paddle

from models.common.data import DataFormatError
from models.common.metrics import to_numpy
from models.common.spec import SpecError
from tools.utils.config import ConfigError, prepare_config, read_config
from tools.utils.data import create_loader
from models.common.loading import load_dygraph_model

# Errors caused by the user's input: reported as one clear line, exit code 2.
# (tools.utils.checkpoint.CheckpointError is a ConfigError.)
USER_ERRORS = (ConfigError, SpecError, DataFormatError, FileNotFoundError, PermissionError)


def parse_args(description, argv=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-m", "--config", required=True, help="model config YAML")
    parser.add_argument("-o", "--opt", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. -o runner.epochs=2 hyper_parameters.fc_sizes=[64,32]")
    return parser.parse_args(argv)


class Context:
    """Config, model wrapper and process placement for one run."""

    def __init__(self, config, dygraph_model, rank=0, world_size=1):
        self.config = config
        self.dygraph_model = dygraph_model
        self.rank = rank
        self.world_size = world_size

    @property
    def is_main(self):
        return self.rank == 0

    def log(self, message):
        prefix = f"[rank {self.rank}] " if self.world_size > 1 else ""
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {prefix}{message}", flush=True)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def setup(args, distributed=True):
    """Load model class and config, pick the device, seed, and join the process group if asked."""
    config = read_config(args.config)  # first: a missing or broken file is the user's first problem
    dygraph_model = load_dygraph_model(args.config)()
    prepare_config(config, args.opt, dygraph_model.open_sections, dygraph_model.required_keys,
                   _spec(dygraph_model))
    check = getattr(dygraph_model, "check_config", None)
    if check is not None:
        try:
            check(config)
        except SpecError as error:
            raise ConfigError(f"{config.path}: {error}") from None
    launched = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    if distributed and (config.get("runner.use_fleet") or launched > 1) \
            and not getattr(dygraph_model, "supports_data_parallel", True):
        raise ConfigError(
            f"runner.use_fleet: {_name(dygraph_model)} does not support data-parallel training "
            f"({launched} process(es) launched); set runner.use_fleet=false and run one process")
    if distributed and config.get("runner.use_fleet"):
        for key, value in getattr(dygraph_model, "data_parallel_requires", {}).items():
            if config.get(key) != value:
                raise ConfigError(f"{key}: must be {value!r} with runner.use_fleet=true (data parallel), "
                                  f"got {config.get(key)!r}")
    if config.get("runner.use_gpu"):
        if not paddle.is_compiled_with_cuda():
            raise ConfigError("runner.use_gpu is true but this PaddlePaddle build has no CUDA support")
        paddle.set_device(f"gpu:{os.environ.get('FLAGS_selected_gpus', '0').split(',')[0]}")
    else:
        paddle.set_device("cpu")
    rank, world_size = 0, 1
    if distributed and config.get("runner.use_fleet"):
        import paddle.distributed as dist

        if launched > 1:
            dist.init_parallel_env()
            rank, world_size = dist.get_rank(), dist.get_world_size()
        else:
            print("runner.use_fleet is true but only one process was launched "
                  "(use python -m paddle.distributed.launch --nproc_per_node N); training on one process",
                  flush=True)
    seed_everything(config.get("runner.seed"))
    return Context(config, dygraph_model, rank, world_size)


def _spec(dygraph_model):
    full = getattr(dygraph_model, "full_config_spec", None)
    return full() if full is not None else getattr(dygraph_model, "config_spec", None)


def _name(dygraph_model):
    name = getattr(dygraph_model, "model_name", None)
    return name() if name is not None else type(dygraph_model).__name__


def train_step(dygraph_model, model, optimizer, metrics, batch, config):
    """One optimisation step, the same for the trainer and the benchmark -> (loss, print_dict)."""
    loss, _, print_dict = dygraph_model.train_forward(model, metrics, batch, config)
    loss.backward()
    optimizer.step()
    optimizer.clear_grad()
    return loss, print_dict


def evaluate(dygraph_model, model, dataset, config, collect=False):
    """Evaluation metrics of ``model`` over ``dataset`` (the model's infer metrics, no gradient).
    -> (values {metric: number}, outputs {column: array} when ``collect`` else None)."""
    metrics, names = dygraph_model.create_metrics("infer")
    for metric in metrics:
        metric.reset()
    columns = {} if collect else None
    was_training = model.training
    model.eval()
    with paddle.no_grad():
        for batch in create_loader(dataset, config, "infer"):
            metrics, outputs = dygraph_model.infer_forward(model, metrics, batch, config)
            if collect:
                for name, value in outputs.items():
                    columns.setdefault(name, []).append(to_numpy(value))
    if was_training:
        model.train()
    values = {n: m.accumulate() for n, m in zip(names, metrics)}
    if collect:
        columns = {name: np.concatenate(parts) for name, parts in columns.items()}
    return values, columns


def run_main(main, argv=None):
    """Run ``main(args)``; user errors print one line naming the culprit and exit with status 2.
    Anything else propagates with its traceback (non-zero exit)."""
    args = parse_args(main.__doc__, argv)
    try:
        return main(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
