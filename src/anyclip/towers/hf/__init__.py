"""Hugging Face text encoders (``text_cfg.hf_model_name``): RoBERTa / XLM-RoBERTa, mT5 and M2M100 / NLLB."""
