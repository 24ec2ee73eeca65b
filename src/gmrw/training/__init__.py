"""Training: the LightningModule wrapping the GMRW model and its random-walk objective."""
