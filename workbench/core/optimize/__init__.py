"""Optimization steps (prune, sparsify, quantize, QAT, distill, fine-tune) and the recipes that compose them."""
