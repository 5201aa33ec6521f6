"""MetaHeac's evaluation, with PaddleRec's command:

    python models/multitask/metaheac/infer_meta.py -m models/multitask/metaheac/config.yaml [-o key=value ...]

For every test task (ad) of the hot and cold test sets: fine-tune the meta-trained model on the
task's seed users, then score its candidates; per-task AUC and precision / recall at the top 5%,
per set the AUC and GAUC with and without fine-tuning. Outputs: tasks_epoch<e>.csv and
metrics.json in runner.infer_output_path (default <infer_load_path>/infer_meta).

This is tools/infer.py, which evaluates every meta-learned model this way (the protocol:
models/common/meta_model.py); the same command with tools/infer.py gives the same result.
"""
import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tools", "infer.py"),
                   run_name="__main__")
