"""BERT with LinkBERT's two pretraining heads: masked language modelling and a 3-way document
relation prediction (DRP) head on the pooled [CLS] vector, the loss being their sum (the MLM
term weighted by `config.mlm_loss_weight`, 1 unless --mlm_loss_weight says otherwise).

The layout is BertForPreTraining's (`bert.*`, `cls.predictions.*`, decoder tied to the word
embeddings), with the 2-way next-sentence head replaced by `document_relation` (3 outputs):
- it loads any BERT-style checkpoint (a bare `BertModel`, `bert-base-cased` with its MLM head,
  a LinkBERT checkpoint, a folder this module saved); a new DRP head starts random;
- its `save_pretrained` folder loads with `AutoModelForMaskedLM` (BertForMaskedLM) and with every
  fine-tuning module's Auto class (`bert.*` and the pooler are all they read).

With labels, the vocabulary projection is computed only at the masked positions (about 15% of
them), which is most of the saving over a full `[batch, length, vocab]` logit tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import BertConfig
from transformers.modeling_outputs import ModelOutput
from transformers.models.bert.modeling_bert import BertModel, BertOnlyMLMHead, BertPreTrainedModel

from linkbert.pretrain.inputs import IGNORE  # the label of a token that is not masked

NUM_RELATIONS = 3


def masked_positions(mlm_labels: torch.Tensor) -> torch.Tensor:
    """Where the masked tokens are in the flattened [batch x length] labels, in order."""
    return (mlm_labels.reshape(-1) != IGNORE).nonzero().squeeze(1)


@dataclass
class LinkBertPreTrainingOutput(ModelOutput):
    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    relation_loss: torch.Tensor | None = None
    #: [batch, 3]: summed MLM loss, masked tokens and correctly predicted ones, per input.
    mlm_example_stats: torch.Tensor | None = None
    relation_logits: torch.Tensor | None = None
    #: Full MLM logits, only without labels (inference use).
    prediction_logits: torch.Tensor | None = None


class LinkBertForPreTraining(BertPreTrainedModel):
    config_class = BertConfig
    _tied_weights_keys = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config)
        self.cls = BertOnlyMLMHead(config)
        self.document_relation = nn.Linear(config.hidden_size, NUM_RELATIONS)
        self.post_init()

    def get_output_embeddings(self):
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings) -> None:
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, mlm_labels: torch.Tensor | None = None,
                relation_label: torch.Tensor | None = None, mlm_positions: torch.Tensor | None = None,
                **kwargs) -> LinkBertPreTrainingOutput:
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        **kwargs)
        return self.heads(out.last_hidden_state, out.pooler_output, mlm_labels, relation_label, mlm_positions)

    def heads(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor, mlm_labels: torch.Tensor | None,
              relation_label: torch.Tensor | None, mlm_positions: torch.Tensor | None = None
              ) -> LinkBertPreTrainingOutput:
        """Both heads and the loss from the encoder's outputs ([batch, length, hidden] and the
        pooled [batch, hidden]); also the padding-free forward's (linkbert.core.padding_free).
        `mlm_positions`: the masked tokens' places in the flattened [batch x length] labels, in
        order, which the collator finds on the host; a masked selection here instead would make
        the host wait for the device once per micro-batch (its size is data-dependent)."""
        relation_logits = self.document_relation(pooled_output)
        if mlm_labels is None:
            return LinkBertPreTrainingOutput(relation_logits=relation_logits,
                                             prediction_logits=self.cls(sequence_output))
        if mlm_positions is None:  # called directly, without the collator
            mlm_positions = masked_positions(mlm_labels)
        hidden = sequence_output.reshape(-1, sequence_output.shape[-1]).index_select(0, mlm_positions)
        logits = self.cls(hidden).float()
        targets = mlm_labels.reshape(-1).index_select(0, mlm_positions)
        token_loss = nn.functional.cross_entropy(logits, targets, reduction="none")
        mlm_loss = token_loss.sum() / max(mlm_positions.numel(), 1)
        loss = mlm_loss
        relation_loss = None
        if relation_label is not None:
            relation_loss = nn.functional.cross_entropy(relation_logits.float(), relation_label)
            # The paper's loss is the plain sum; config.mlm_loss_weight (--mlm_loss_weight) scales MLM.
            loss = getattr(self.config, "mlm_loss_weight", 1.0) * mlm_loss + relation_loss
        # Per-input sums, for evaluation metrics weighted by masked tokens.
        row = mlm_positions // mlm_labels.shape[1]
        stats = torch.zeros(mlm_labels.shape[0], 3, device=mlm_labels.device, dtype=torch.float32)
        stats[:, 0].index_add_(0, row, token_loss.detach())
        stats[:, 1] = (mlm_labels != IGNORE).sum(dim=1)
        stats[:, 2].index_add_(0, row, (logits.argmax(-1) == targets).float())
        return LinkBertPreTrainingOutput(loss=loss, mlm_loss=mlm_loss.detach(), relation_loss=relation_loss,
                                         mlm_example_stats=stats, relation_logits=relation_logits)
