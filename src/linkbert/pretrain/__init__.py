"""LinkBERT pretraining: linked-document inputs, MLM + document relation prediction."""
