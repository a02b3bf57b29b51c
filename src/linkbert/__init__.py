"""LinkBERT / BioLinkBERT fine-tuning (MRQA, BLURB, MedQA-USMLE, MMLU), reproduced on today's stack.

Task modules: `linkbert.seqcls.run_seqcls`, `linkbert.tokcls.run_ner`, `linkbert.qa.run_qa`,
`linkbert.mc.run_multiple_choice`; the shared core is `linkbert.core`.
"""

__version__ = "0.1.0"
