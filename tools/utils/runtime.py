"""What both runners need: command line, config + model loading, device, seeds, distributed
context, logging, and turning user errors into a one-line message with a non-zero exit."""
import argparse
import os
import random
import sys
import time

import numpy as np
import paddle

from models.common.artifacts import ArtifactError
from models.common.data import DataFormatError
from models.common.spec import SpecError
from tools.utils.config import RUNNER_SPEC, ConfigError, describe_keys, prepare_config, read_config
from models.common.loading import load_dygraph_model

# Errors caused by the user's input: reported as one clear line, exit code 2.
# (tools.utils.checkpoint.CheckpointError is a ConfigError.)
USER_ERRORS = (ConfigError, SpecError, DataFormatError, ArtifactError, FileNotFoundError, PermissionError)


def parse_args(description, argv=None):
    parser = argparse.ArgumentParser(description=description)
    add_config_arguments(parser)
    return parser.parse_args(argv)


def add_config_arguments(parser):
    """-m CONFIG, -o KEY=VALUE ... and --help-config."""
    parser.add_argument("-m", "--config", required=True, help="model config YAML")
    parser.add_argument("-o", "--opt", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. -o runner.epochs=2 hyper_parameters.fc_sizes=[64,32]")
    parser.add_argument("--help-config", nargs="?", const="text", choices=("text", "markdown"),
                        help="print every key this config's model reads (type and range, default, value, what "
                             "it does) and exit; 'markdown' prints the readme's table")


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


def print_config_help(config, spec_of, overrides, style):
    """Print the keys ``config`` is read with (the runner's and the model's) and their values."""
    full = {}

    def capture(cfg):
        full.update(spec_of(cfg))
        return full

    try:
        prepare_config(config, overrides, capture)
    except ConfigError as error:  # the table still shows what is declared; the problem is said last
        problem = str(error)
    else:
        problem = None
    print(describe_keys({**RUNNER_SPEC, **full}, config, markdown=style == "markdown"))
    if problem:
        print(f"\nthis config does not check out: {problem}")


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def load_model(config_path, overrides=(), extra_spec=None, help_style=None):
    """-> (config, DygraphModel instance): the config read, overridden and checked against every key
    the model declares (its readers' too), defaults filled in, the model's own rules applied.
    ``extra_spec``: keys a tool declares besides the model's (a benchmark's settings)."""
    config = read_config(config_path)  # first: a missing or broken file is the user's first problem
    dygraph_model = load_dygraph_model(config_path)()

    def spec_of(cfg):
        return {**dygraph_model.full_config_spec(cfg), **(extra_spec or {})}

    if help_style:
        print_config_help(config, spec_of, overrides, help_style)
        sys.exit(0)
    prepare_config(config, overrides, spec_of)
    try:
        dygraph_model.check_config(config)
    except SpecError as error:
        raise ConfigError(f"{config.path}: {error}") from None
    return config, dygraph_model


def setup(args, distributed=True, extra_spec=None):
    """Load model class and config, pick the device, seed, and join the process group if asked."""
    config, dygraph_model = load_model(args.config, args.opt, extra_spec, getattr(args, "help_config", None))
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


def _name(dygraph_model):
    name = getattr(dygraph_model, "model_name", None)
    return name() if name is not None else type(dygraph_model).__name__


def _run(name, work):
    return work()


def train_step(dygraph_model, model, optimizer, metrics, batch, config, phase=_run, exchange=None):
    """One optimisation step, the same for the trainer and the benchmarks -> (loss, print_dict).
    ``phase(name, work)`` runs each part ("forward+loss", "backward", "exchange", "optimizer"; a
    profiler times them); ``exchange``: the ranks' gradient exchange (tools.utils.parallel)."""
    loss, _, print_dict = phase("forward+loss", lambda: dygraph_model.train_forward(model, metrics, batch, config))
    phase("backward", loss.backward)
    if exchange is not None:
        phase("exchange", exchange)
    # Gradients released, not zero-filled: the next backward writes fresh ones instead of adding
    # them to zeros (a dense table's: a 57 MB fill and add saved per DeepFM step); as torch's zero_grad.
    phase("optimizer", lambda: (optimizer.step(), optimizer.clear_grad(set_to_zero=False)))
    return loss, print_dict


def run_main(main, argv=None):
    """Run ``main(args)``; user errors print one line naming the culprit and exit with status 2.
    Anything else propagates with its traceback (non-zero exit)."""
    args = parse_args(main.__doc__, argv)
    try:
        return main(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
