"""OpenAI / open_clip's own towers: the ViT, the ModifiedResNet, the text transformer and CoCa's caption decoder."""
