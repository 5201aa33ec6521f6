"""Base ``DygraphModel`` of the two-tower retrieval models (models/recall/*): the matching
wrapper's config keys, training step (models.common.matching) and the retrieval evaluation
tools/infer.py runs for them (models.common.retrieval). A model folder subclasses it with the
defaults of its paper (``config_spec = MatchingDygraphModel.defaults(mode=...)``) and, when its
towers are not the default MLP towers, writes ``build_towers``.


The keys: ``config_spec`` below, and the data set's (dataset_info_path, embed_dim); ``python
tools/trainer.py -m <config> --help-config`` prints them with their values.
"""
import os

import numpy as np

from models.common.base_model import BaseDygraphModel
from models.common.embedding import FeatureEmbedding
from models.common.export import Served
from models.common.matching import (MODES, NEGATIVES, PAIR_LOSSES, SIMILARITIES, MLPTower, TwoTower, candidate_logits,
                                    matching_loss)
from models.common.metrics import PairAUC
from models.common.retrieval import RetrievalEvaluation
from models.common.datasets.movielens import USER_FEATURES, ItemCatalog, dataset_info, embedded_features
from models.common.sampling import NegativeSampler
from models.common.spec import Param, SpecError, positive_int, positive_ints

HP = "hyper_parameters"


def load_pretrained_items(embedding, info, config):
    """Item-id rows from ``hyper_parameters.pretrained_item_embedding`` (raw ids in the .txt beside
    it, mapped through the data set's ``item_raw_id``); items it lacks keep their random rows."""
    key = f"{HP}.pretrained_item_embedding"
    path = config.get(key)
    ids_path = os.path.splitext(path)[0] + ".txt"
    try:
        vectors = np.load(path, allow_pickle=False)
        raw_ids = np.loadtxt(ids_path, dtype=np.int64, ndmin=1)
    except (OSError, ValueError) as error:
        raise SpecError(f"{key}: cannot read {path} and its ids {ids_path} ({error})") from None
    if vectors.ndim != 2 or len(vectors) != len(raw_ids) or not np.isfinite(vectors).all():
        raise SpecError(f"{key}: {path} must hold finite vectors, one per id of {ids_path} "
                        f"({len(raw_ids)} ids, array {vectors.shape})")
    if vectors.shape[1] != embedding.dim:
        raise SpecError(f"{key}: vectors of {vectors.shape[1]} values, but {HP}.embed_dim is {embedding.dim}")
    encoded = {raw: code for code, raw in enumerate(info["item_raw_id"])}
    known = np.array([raw in encoded for raw in raw_ids.tolist()], dtype=bool)
    codes = np.array([encoded[raw] for raw in raw_ids[known].tolist()], dtype=np.int64)
    embedding.load_rows("item_id", codes, vectors[known], freeze=config.get(f"{HP}.freeze_pretrained"))
    print(f"{key}: {len(codes)} of {len(info['item_raw_id'])} item ids initialised from {path} "
          f"({'frozen' if config.get(f'{HP}.freeze_pretrained') else 'fine-tuned'}; {int((~known).sum())} "
          f"ids of the file are not in the data set)", flush=True)


class MatchingDygraphModel(BaseDygraphModel):
    label_names = ("item_id",)
    # The step calls the towers' methods, not forward(), which paddle.DataParallel needs.
    supports_data_parallel = False
    # What tools/infer.py's metrics.json "headline" (and the demo table) shows; all go to "infer".
    headline_keys = ("hit@50", "popular_hit@50", "recall@100", "ndcg@10", "mrr@10", "hnsw_recall_vs_exact@50")
    # A model folder gives the keys of its paper other defaults with ``defaults(...)``.
    config_spec = {
        f"{HP}.user_fc_sizes": positive_ints(default=[64, 32], help="user tower MLP sizes (the last is the vector's)"),
        f"{HP}.item_fc_sizes": positive_ints(default=[64, 32], help="item tower MLP sizes (the last is the vector's)"),
        f"{HP}.dropout": Param(float, min=0.0, below=1.0, default=0.0, help="tower dropout"),
        f"{HP}.similarity": Param(str, choices=SIMILARITIES, default="cosine", scoring=True,
                                  help="cosine (L2-normalised tower outputs) or dot"),
        f"{HP}.temperature": Param(float, above=0.0, default=0.1, help="every logit is similarity / temperature"),
        f"{HP}.mode": Param(str, choices=MODES, default="point",
                            help="point (BCE), pair (BPR or hinge) or list (softmax) training"),
        f"{HP}.pair_loss": Param(str, choices=PAIR_LOSSES, default="bpr", help="pair mode: bpr or hinge"),
        f"{HP}.margin": Param(float, min=0.0, default=0.1, help="the hinge loss's margin"),
        f"{HP}.point_balance": Param(bool, default=True, help="point mode: the positives' mean loss + the "
                                                              "negatives' mean (false: one mean over all pairs)"),
        f"{HP}.negatives": Param(str, choices=NEGATIVES, default="popularity",
                                 help="how negatives are drawn: uniform, popularity (count^0.75), log_popularity "
                                      "or the batch's other positives (in_batch)"),
        f"{HP}.neg_num": positive_int(default=4, help="sampled negatives per positive (not with in_batch)"),
        f"{HP}.logq_correction": Param(bool, default=False,
                                       help="subtract log(sampling probability) from each candidate's logit"),
        f"{HP}.retrieval.index": Param(str, choices=("flat", "hnsw"), default="flat",
                                       help="evaluation search: exact inner product, or HNSW (with its recall "
                                            "against exact)"),
        f"{HP}.retrieval.hnsw_m": positive_int(default=32, help="HNSW graph degree"),
        f"{HP}.retrieval.hnsw_ef_search": positive_int(default=128, help="HNSW search breadth"),
        f"{HP}.retrieval.top_k": positive_ints(default=[10, 50, 100], help="the K of Hit/Recall/NDCG/MRR@K"),
        f"{HP}.pretrained_item_embedding": Param(str, required=False, file=True,
                                                 help=".npy of pretrained item-id rows (raw ids in the .txt beside it)"),
        f"{HP}.freeze_pretrained": Param(bool, default=False, help="keep the pretrained rows fixed"),
    }

    def hp(self, config):
        keys = ("similarity", "temperature", "mode", "pair_loss", "margin", "point_balance", "negatives", "neg_num",
                "logq_correction")
        values = {k: config.get(f"{HP}.{k}") for k in keys}
        for k in ("similarity", "mode", "pair_loss", "negatives"):
            values[k] = str(values[k]).lower()
        return values

    def check_config(self, config):
        super().check_config(config)
        if config.get(f"{HP}.negatives") == "in_batch":
            if config.get("runner.train_batch_size") < 2:
                raise SpecError(f"'{HP}.negatives' is in_batch but runner.train_batch_size < 2 leaves no negatives")
            if config.get(f"{HP}.neg_num") != self.model_spec()[f"{HP}.neg_num"].default:
                raise SpecError(f"'{HP}.neg_num' is not used with in_batch negatives (every other row's positive is "
                                f"one): leave it out, or choose sampled negatives")

    # ---- network ----------------------------------------------------------------------
    def build_towers(self, embedding, config):
        """-> (user tower, item tower), each an nn.Layer with ``output_dim``: by default an MLP over the
        user's features and one over the item's (DSSM's towers); a model folder may build others."""
        dropout = config.get(f"{HP}.dropout")
        return (MLPTower(embedding, list(USER_FEATURES) + ["hist"], config.get(f"{HP}.user_fc_sizes"), dropout),
                MLPTower(embedding, ["item_id", "genre"], config.get(f"{HP}.item_fc_sizes"), dropout))

    def create_model(self, config):
        info = dataset_info(config)
        embedding = FeatureEmbedding(embedded_features(config))
        if config.get(f"{HP}.pretrained_item_embedding"):
            load_pretrained_items(embedding, info, config)
        user_tower, item_tower = self.build_towers(embedding, config)
        if user_tower.output_dim != item_tower.output_dim:
            raise SpecError(f"the user tower's output size ({user_tower.output_dim}) differs from the item "
                            f"tower's ({item_tower.output_dim}): check {HP}.user_fc_sizes / item_fc_sizes / embed_dim")
        model = TwoTower(embedding, user_tower, item_tower, ItemCatalog(info), self.hp(config)["similarity"])
        hp = self.hp(config)
        counts = np.asarray(info["item_count"])
        self.sampler = None if hp["negatives"] == "in_batch" else NegativeSampler(counts, hp["negatives"])
        # logQ of in-batch negatives: how often an item is a positive (its training count).
        self.log_q = (NegativeSampler(counts, "unigram") if self.sampler is None else self.sampler).log_q
        return model

    # ---- training ---------------------------------------------------------------------
    def create_metrics(self, mode="train"):
        return [PairAUC("auc")], ["auc"]  # each positive against its own negatives, in training

    def train_forward(self, dy_model, metrics_list, batch_data, config):
        hp = self.hp(config)
        pos, neg, mask = candidate_logits(dy_model, batch_data, self.sampler, hp, self.log_q)
        loss = matching_loss(pos, neg, hp["mode"], mask, hp["pair_loss"], hp["margin"], hp["point_balance"])
        for metric in metrics_list:
            metric.update(pos.detach(), neg.detach(), mask)
        return loss, metrics_list, None

    def infer_forward(self, dy_model, metrics_list, batch_data, config):
        """Per-row similarity of the user and the held-out item (benchmarks/benchmark.py's inference
        step; tools/infer.py evaluates by retrieval, ``create_evaluation``)."""
        score = dy_model(batch_data)
        return metrics_list, {"item_id": batch_data["item_id"], "similarity": score}

    # ---- export (tools/export.py) ----------------------------------------------------
    def serving_graphs(self, model, config):
        """The user tower (user features -> the query vector) and the item tower (item id -> the
        key vector; the catalog's side features are inside), as the retrieval evaluation uses them."""
        return {"user_tower": Served(model, "user_embedding", ["user_vector"]),
                "item_tower": Served(model, "item_vectors", ["item_vector"])}

    def serving_catalog(self, model, config):
        info = dataset_info(config)
        ids = np.arange(1, len(info["item_count"]), dtype=np.int64)  # 0 is padding
        raw_items, raw_users = info.get("item_raw_id"), info.get("user_raw_id")
        return {"ids": ids, "columns": {"item_id": ids}, "raw_ids": np.asarray(raw_items)[ids] if raw_items else None,
                "user_raw_ids": raw_users}  # the source data's ids: joins with a ranker's tables

    # ---- evaluation (tools/infer.py) --------------------------------------------------
    def create_evaluation(self, config, log):
        return RetrievalEvaluation(self, config, log)
