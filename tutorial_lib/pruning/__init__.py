"""Pruning with learnable binary masks: training the masks jointly with the weights."""
