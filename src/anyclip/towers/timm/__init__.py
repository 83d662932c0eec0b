"""timm image towers that open_clip builds from ``vision_cfg.timm_model_name``, implemented natively in Keras."""
