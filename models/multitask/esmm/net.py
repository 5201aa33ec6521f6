"""ESMM (Ma et al., SIGIR 2018): Entire Space Multi-task Model.

    e      = [sum-pooled embeddings of the 23 fields]        one table shared by both towers
    pCTR   = sigmoid(CTR tower(e))
    pCVR   = sigmoid(CVR tower(e))
    pCTCVR = pCTR * pCVR

Both towers see every impression; CVR gets its gradient only through pCTCVR, so it is never
trained on the clicked sample alone (the sample selection bias ESMM removes). The towers are
MLPs with ReLU ending in one logit (PaddleRec's 2-way softmax is the same as one sigmoid).
Labels are never inputs: the network reads the 23 feature fields by name.
"""
import paddle.nn as nn
import paddle.nn.functional as F

from models.common.embedding import BagEmbedding
from models.common.features import SequenceFeature
from models.common.layers import MLP


class ESMMLayer(nn.Layer):
    def __init__(self, schema, ctr_sizes, cvr_sizes, sparse=False, init_std=None):
        super().__init__()
        fields = schema.of_kind(SequenceFeature)
        self.embedding = BagEmbedding(fields, sparse=sparse, init=("normal", init_std))
        width = len(fields) * self.embedding.dim
        self.ctr = MLP(width, list(ctr_sizes) + [1], last_activation=False)
        self.cvr = MLP(width, list(cvr_sizes) + [1], last_activation=False)

    def forward(self, batch):
        e = self.embedding(batch).flatten(start_axis=1)
        ctr = F.sigmoid(self.ctr(e))
        cvr = F.sigmoid(self.cvr(e))
        return {"ctr": ctr, "cvr": cvr, "ctcvr": ctr * cvr}
