"""Pieces of benchmarks/benchmark.py: synthetic data of a model's own format, timing loops and
memory readings (the PaddleRec-style readers it compares with are in benchmarks/baselines).

Nothing here is used by training itself; the benchmark drives the real runner code path
(models.common.data.loader.create_dataset / create_loader and the model's DygraphModel) and uses these
helpers only around it.
"""
import math
import os
import resource
import sys
import threading
import time

import numpy as np
import paddle

from models.common.data import DataFormatError, SlotParser
from tools.utils.runtime import train_step

# ---------------------------------------------------------------------------------------------
# memory


def peak_rss_mb():
    """High-water mark of this process's resident set size (ru_maxrss), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0  # bytes vs KiB


def current_rss_mb():
    """Current resident set size in MiB (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def rss_anon_mb(pid="self"):
    """Current anonymous resident memory of a process (``RssAnon`` in /proc/<pid>/status: heap,
    numpy arrays, tensors; not the file-backed pages of memory-mapped data) in MiB, or None where
    /proc has no RssAnon (not Linux, or a kernel before 4.5)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


class PeakRssAnonSampler:
    """Peak of this process's RssAnon over a window: a daemon thread reads /proc/self/status every
    ``interval`` seconds (one small read under the GIL: well under 1% of a step at 20 ms).

        sampler = PeakRssAnonSampler().start()
        ...                      # sampler.peak_mb: the peak so far (a fresh reading included)
        sampler.stop()           # returns the peak, in MiB (None where RssAnon is unavailable)

    The kernel keeps no RssAnon high-water mark, so a peak shorter than ``interval`` can be missed;
    ``start()``, ``peak_mb`` and ``stop()`` each take a reading too. Usable as a context manager.
    """

    def __init__(self, interval=0.02):
        self.interval = interval
        self.start_mb = None
        self._peak = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def sample(self):
        """Take one reading now; return it (MiB or None)."""
        value = rss_anon_mb()
        if value is not None:
            with self._lock:
                if self._peak is None or value > self._peak:
                    self._peak = value
        return value

    def _run(self):
        while not self._stop.wait(self.interval):
            if self.sample() is None:
                return  # no RssAnon here: nothing to sample

    def start(self):
        if self._thread is not None:
            raise RuntimeError("PeakRssAnonSampler already started")
        self.start_mb = self.sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="peak-rss-anon", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.sample()
        return self._peak

    @property
    def running(self):
        return self._thread is not None

    @property
    def peak_mb(self):
        """Highest RssAnon seen so far in MiB (a reading is taken now if still running)."""
        if self.running:
            self.sample()
        return self._peak

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


# ---------------------------------------------------------------------------------------------
# synthetic data


def read_lines(files):
    """Non-blank lines (without newline) of ``files``, in order."""
    lines = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            lines.extend(line.rstrip("\r\n") for line in f if line.strip())
    return lines


def _mix(values, replica, slot):
    """Deterministic 64-bit mix of (id, replica, slot): a cheap splitmix64-style hash, vectorised."""
    with np.errstate(over="ignore"):
        x = values.astype(np.uint64)
        x = x + (np.asarray(replica, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        x = x + np.uint64((slot + 1) * 0xBF58476D1CE4E5B9 % (1 << 64))
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def typed_slots(module, config):
    """[(slot name, int | float)] of a slot-format reader module (its ``SLOTS`` and ``schema``),
    else None: which tokens of a line are integers (ids) and which are floats."""
    names, declare = getattr(module, "SLOTS", None), getattr(module, "schema", None)
    if not names or declare is None:
        return None
    schema = declare(config)
    kinds = []
    for column, width in SlotParser(names).columns_for(schema):
        kinds.extend([int if schema.slots[column].block == "int" else float] * (width or 1))
    return list(zip(names, kinds))


def _line_template(line, slots, id_positions):
    """(format string with %d at the id positions, ids) for a slot-format line, or None when the
    line does not follow ``slots``."""
    tokens = line.split()
    if len(tokens) != len(slots):
        return None
    ids = []
    parts = []
    for position, (token, (name, _)) in enumerate(zip(tokens, slots)):
        key, sep, value = token.partition(":")
        if not sep or key != name:
            return None
        if position in id_positions:
            try:
                ids.append(int(value))
            except ValueError:
                return None
            parts.append(name.replace("%", "%%") + ":%d")
        else:
            parts.append(token.replace("%", "%%"))
    return " ".join(parts), ids


def synthesise(source_files, out_dir, rows, slots=None, num_ids=None, num_files=1, perturb=True):
    """Write ``rows`` lines of the sample's format into ``num_files`` files in ``out_dir``.

    Lines of ``source_files`` are cycled over. With a slot list (a reader's ``SLOTS``: (name,
    type) per field, the first field being the label) and ``num_ids`` (the embedding table size),
    the integer fields after the label are sparse ids: every pass over the sample ("replica") maps
    them through a deterministic hash into [0, num_ids), so the embedding table sees many distinct
    rows as real data would; the first replica keeps the ids (``id % num_ids``). Other lines (and
    every line when ``slots`` is None) are copied as they are; a first line without any digit is
    taken for a header and repeated at the top of each file. Returns a description dict.
    """
    start = time.perf_counter()
    lines = read_lines(source_files)
    if not lines:
        raise DataFormatError(f"no lines to replicate in {source_files}")
    header = None
    if not any(c.isdigit() for c in lines[0]):
        header, lines = lines[0], lines[1:]
        if not lines:
            raise DataFormatError(f"only a header line to replicate in {source_files}")
    templates, id_matrix, id_positions = None, None, ()
    if slots and perturb and num_ids:
        id_positions = {i for i, (_, kind) in enumerate(slots) if kind is int and i > 0}
        parsed = [_line_template(line, slots, id_positions) for line in lines]
        if id_positions and all(p is not None for p in parsed):
            templates = [p[0] for p in parsed]
            id_matrix = np.array([p[1] for p in parsed], dtype=np.int64)
    n_src = len(lines)
    os.makedirs(out_dir, exist_ok=True)
    num_files = max(1, min(num_files, rows))
    bounds = np.linspace(0, rows, num_files + 1).astype(np.int64)
    paths, total_bytes = [], 0
    for k in range(num_files):
        index = np.arange(bounds[k], bounds[k + 1], dtype=np.int64)
        source = index % n_src
        if templates is None:
            text = "\n".join(lines[i] for i in source.tolist())
        else:
            replica = (index // n_src).astype(np.uint64)[:, None]
            ids = id_matrix[source]
            slot_numbers = np.arange(ids.shape[1], dtype=np.uint64)[None, :]
            hashed = (_mix(ids, replica, 0) + slot_numbers * np.uint64(0x2545F4914F6CDD1D)) % np.uint64(num_ids)
            ids = np.where(replica == 0, ids % num_ids, hashed.astype(np.int64))
            text = "\n".join(templates[s] % tuple(row) for s, row in zip(source.tolist(), ids.tolist()))
        if header is not None:
            text = header + "\n" + text
        path = os.path.join(out_dir, f"part-{k:05d}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        total_bytes += os.path.getsize(path)
        paths.append(path)
    return {
        "dir": out_dir, "files": len(paths), "rows": int(rows), "bytes": int(total_bytes),
        "source_lines": n_src, "ids_rehashed": templates is not None,
        "seconds": round(time.perf_counter() - start, 3),
    }


# ---------------------------------------------------------------------------------------------
# timing


def endless(make_loader):
    """Yield batches forever: ``make_loader(epoch)`` is called again whenever one is exhausted."""
    epoch = 0
    while True:
        empty = True
        for batch in make_loader(epoch):
            empty = False
            yield batch
        if empty:
            raise ValueError("the data loader produced no batch")
        epoch += 1


class Meter:
    """Accumulates timed steps over one or more rounds: samples, wall seconds, reader wait."""

    def __init__(self):
        self.samples = 0
        self.seconds = 0.0
        self.reader_seconds = 0.0
        self.step_times = []
        self.round_rates = []  # ins/s of each round, to show the spread

    def add_round(self, samples, seconds, reader_seconds, step_times):
        self.samples += samples
        self.seconds += seconds
        self.reader_seconds += reader_seconds
        self.step_times.extend(step_times)
        if seconds > 0:
            self.round_rates.append(samples / seconds)

    def summary(self):
        times = np.asarray(self.step_times) if self.step_times else np.zeros(1)
        return {
            "steps": len(self.step_times),
            "samples": self.samples,
            "seconds": round(self.seconds, 4),
            "ins_per_sec": self.samples / self.seconds if self.seconds > 0 else 0.0,
            "ins_per_sec_rounds": [round(r, 1) for r in self.round_rates],
            "reader_seconds": round(self.reader_seconds, 4),
            "reader_share": self.reader_seconds / self.seconds if self.seconds > 0 else 0.0,
            "step_ms_mean": 1000.0 * float(times.mean()),
            "step_ms_p50": 1000.0 * float(np.percentile(times, 50)),
            "step_ms_p90": 1000.0 * float(np.percentile(times, 90)),
        }


def _timed_loop(batches, warmup, steps, meter, adapt, run_step, count_rows):
    samples, reader_seconds, step_times = 0, 0.0, []
    start = None
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        tick = time.perf_counter()
        batch = next(batches)
        if adapt is not None:
            batch = adapt(batch)
        fetched = time.perf_counter()
        run_step(batch)
        done = time.perf_counter()
        if step >= warmup:
            samples += count_rows(batch)
            reader_seconds += fetched - tick
            step_times.append(done - tick)
    if steps:
        meter.add_round(samples, time.perf_counter() - start, reader_seconds, step_times)


def train_steps(dm, config, model, optimizer, metrics, batches, warmup, steps, meter, adapt=None):
    """``warmup`` untimed then ``steps`` timed training steps from the iterator ``batches``, each
    done as tools/trainer.py does it; reader time is the wait for the next batch (plus ``adapt``).
    Returns the last loss."""
    model.train()
    last = {}

    def step(batch):
        loss, _ = train_step(dm, model, optimizer, metrics, batch, config)
        last["loss"] = float(loss)

    _timed_loop(batches, warmup, steps, meter, adapt, step, dm.batch_rows)
    return last.get("loss", float("nan"))


def infer_steps(dm, config, model, metrics, batches, warmup, steps, meter, adapt=None):
    """``warmup`` + ``steps`` inference batches under no_grad, the last ``steps`` timed."""
    model.eval()
    with paddle.no_grad():
        _timed_loop(batches, warmup, steps, meter, adapt,
                    lambda batch: dm.infer_forward(model, metrics, batch, config), dm.batch_rows)


def split_steps(steps, rounds):
    """``steps`` cut into ``rounds`` near-equal positive chunks (fewer if steps < rounds)."""
    rounds = max(1, min(rounds, steps))
    return [len(c) for c in np.array_split(np.arange(steps), rounds)]


def time_reader(batches, warmup, steps, adapt=None):
    """Pull ``warmup`` + ``steps`` batches with no training in between: the reader's own cost per
    batch, which a prefetching loader may hide from the wait time measured during training (its
    thread then competes with the training step for the CPU and the GIL instead)."""
    for _ in range(warmup):
        batch = next(batches)
        if adapt is not None:
            adapt(batch)
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
        if adapt is not None:
            adapt(batch)
    seconds = time.perf_counter() - start
    return {"steps": steps, "seconds": round(seconds, 4), "ms_per_batch": 1000.0 * seconds / steps}


def default_steps(rows, batch_size, warmup):
    """One epoch's worth of timed steps (at least one)."""
    return max(1, math.floor(rows / batch_size) - warmup)
